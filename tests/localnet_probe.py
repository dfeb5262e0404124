"""One TCP SYN, hand-made, from inside a sandbox host's network namespace.

    python3 localnet_probe.py IFACE DST_MAC DST_IP PORT

moby/moby#45610: a port Docker publishes on 127.0.0.1 answered a packet addressed
to 127.0.0.1 that arrives from the network segment (a neighbour sets the machine's
MAC address and 127.0.0.1 as the destination). A normal socket cannot send such a
packet, so this one is written byte by byte onto the interface (AF_PACKET) and the
answer is read there too. Prints `open` (SYN-ACK), `closed` (RST) or `silent`.
"""
import os
import random
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src_ip: str, dst_ip: str, sport: int, dport: int) -> bytes:
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", checksum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def mac_bytes(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def main(iface: str, dst_mac: str, dst_ip: str, port: int) -> str:
    src_mac = open(f"/sys/class/net/{iface}/address").read().strip()
    src_ip = os.popen(f"ip -4 -o addr show dev {iface}").read().split()[3].split("/")[0]
    sport = random.randint(40000, 60000)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((iface, 0))
    s.settimeout(0.2)
    frame = mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + syn(src_ip, dst_ip, sport, port)
    deadline = time.time() + 3
    sent = 0
    while time.time() < deadline:
        if sent < 3 and time.time() > deadline - 3 + sent:
            s.send(frame)
            sent += 1
        try:
            data = s.recv(2048)
        except socket.timeout:
            continue
        ip = data[14:]
        if len(ip) < 40 or ip[9] != 6:
            continue
        header = (ip[0] & 0x0F) * 4
        tsport, tdport = struct.unpack("!HH", ip[header:header + 4])
        flags = ip[header + 13]
        if socket.inet_ntoa(ip[12:16]) == dst_ip and tsport == port and tdport == sport:
            return "open" if flags & 0x12 == 0x12 else "closed" if flags & 0x04 else f"flags {flags:#x}"
    return "silent"


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
