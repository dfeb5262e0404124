"""1 GiB from this machine's loopback to transit's (through the gateway, with
Kerberos), two ways, in one run:

- ampel-tasks' Tunnel (what `pull` uses: `ssh -O forward -R` on the host's one
  OpenSSH master connection),
- a plain `ssh -R`, a connection of its own, the runbook's own command.

(An earlier version measured fabric's in-process `forward_remote` at 0.05 of plain
OpenSSH; fabric is no longer used, since paramiko has no GSSAPI.)

The receiving end on transit reads http://localhost:PORT/blob as `singularity pull`
would, and reports MiB/s; the ratio of each pair, measured one after the other in
alternating order, as median, min and max.

    python3 benchmarks/tunnel.py [--repeats 5] [--mib 1024]
"""
import http.server
import socketserver
import subprocess
import threading
import time

from _common import REPO, arguments, interleaved, report, spread

CHUNK = b"\x5a" * (1 << 20)


def serve(mib):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(mib << 20))
            self.end_headers()
            for _ in range(mib):
                self.wfile.write(CHUNK)

        def log_message(self, *a):
            pass

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


FETCH = (
    "python3 -c \"import sys,time,urllib.request as u; t=time.time(); r=u.urlopen('http://localhost:{port}/blob');"
    " n=0\nwhile True:\n b=r.read(1<<20)\n if not b: break\n n+=len(b)\n"
    "print(n, time.time()-t)\""
)


def fetch(host, port):
    res = host.run(FETCH.format(port=port), mutating=False)
    n, secs = res.stdout.split()
    return int(n) / 2**20 / float(secs)


def main():
    args = arguments(__doc__, repeats=5, mib=(int, 1024, "MiB sent through each tunnel per measurement"))

    from invoke import Config

    from ampel_tasks.flow import run as runs
    from ampel_tasks.config.defaults import DEFAULTS
    from ampel_tasks.remote.tunnel import Tunnel

    config = Config(runtime_path=str(REPO / "config/sandbox.yaml"))
    config.load_runtime()
    config.load_collection(DEFAULTS)
    r = runs.begin(config)
    host = r.host("transit")
    srv, port = serve(args.mib)
    s = r.settings

    def ours():
        with Tunnel(host, 15001, "127.0.0.1", port):
            return fetch(host, 15001)

    def plain():  # as the runbook types it: a connection of its own
        p = subprocess.Popen(["ssh", "-F", s.ssh_config, "-N", "-o", "ExitOnForwardFailure=yes",
                              "-R", f"15002:127.0.0.1:{port}", "transit"])
        try:
            for _ in range(100):
                if host.run("timeout 1 bash -c '</dev/tcp/127.0.0.1/15002'", mutating=False, warn=True).ok:
                    break
                time.sleep(0.1)
            return fetch(host, 15002)
        finally:
            p.terminate()
            p.wait()

    pairs = interleaved(ours, plain, args.repeats)
    runs.end(r)
    report("tunnel", {
        "mib": args.mib,
        "ampel_tasks_tunnel_mib_s": spread(a for a, _ in pairs),
        "plain_ssh_R_mib_s": spread(b for _, b in pairs),
        "ratio_ours_to_plain": spread(a / b for a, b in pairs),
    })


if __name__ == "__main__":
    main()
