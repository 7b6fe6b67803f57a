"""Fails if the README's run command would compile a dependency that the test build does not.

Usage: check-one-build.py

The README's two commands, `cargo run --release --bin p8fs` and `scripts/test-all.sh` (which
builds every target of the workspace), must share one build: a newcomer who runs both must not
compile a dependency twice with two feature sets (RocksDB's C++ takes 20 minutes). Cargo unifies
features per selection of packages and targets, so a dev-dependency that turns on a feature of a
shared crate splits the two builds. This asks cargo for both unit graphs (no compilation) and
lists every dependency unit of the run build that the test build lacks.

`--unit-graph` is an unstable cargo flag; RUSTC_BOOTSTRAP=1 lets the stable cargo print it. Nothing
is compiled with it.
"""

import json
import os
import subprocess
import sys


def units(*args: str) -> set:
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    out = subprocess.run(
        ["cargo", "build", "--release", *args, "-Z", "unstable-options", "--unit-graph"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    graph = json.loads(out)
    return {
        (
            unit["pkg_id"].split("#", 1)[-1],
            unit["target"]["name"],
            ",".join(unit["features"]),
            unit["mode"],
            json.dumps(unit["profile"], sort_keys=True),
        )
        for unit in graph["units"]
        if not unit["pkg_id"].startswith("path+")
    }


def main() -> int:
    run = units("--bin", "p8fs")
    test = units("--workspace", "--all-targets")
    missing = sorted(run - test)
    if missing:
        print("the run build and the test build compile these dependencies differently:", file=sys.stderr)
        for pkg, target, features, mode, _ in missing:
            print(f"  {pkg} ({target}, {mode}) features [{features}]", file=sys.stderr)
        print("pin the feature in the workspace Cargo.toml (see its feature pins)", file=sys.stderr)
        return 1
    print(f"one build: the {len(run)} dependency units of `cargo run --bin p8fs` are all in the test build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
