"""`invoke --list` (the tool's tasks loaded, every module that defines one) vs bare
`invoke --version` (invoke alone): the price of loading ampel-tasks, as a ratio
of paired, interleaved runs. Needs no sandbox.

    python3 benchmarks/cli_startup.py [--repeats 15]
"""
from _common import arguments, interleaved, report, spread, timed


def main():
    args = arguments(__doc__, repeats=15)
    pairs = interleaved(lambda: timed(["invoke", "--list"])[0], lambda: timed(["invoke", "--version"])[0],
                        args.repeats)
    report("cli_startup", {
        "invoke_list_s": spread(a for a, _ in pairs),
        "invoke_version_s": spread(b for _, b in pairs),
        "ratio_list_to_version": spread(a / b for a, b in pairs),
    })


if __name__ == "__main__":
    main()
