"""Wall time of the default run (`aubench run --all` on SynthAU) in a fresh runs folder, with the
time per method and protocol taken from the result records. The budget is 15 minutes on 2 CPU cores."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aubench.cli", "run", "--all", "--runs-dir", tmp, "--no-progress"],
                       check=True)
        wall = time.perf_counter() - t
        per = defaultdict(float)
        for path in Path(tmp).rglob("record.json"):
            rec = json.loads(path.read_text())
            per[(rec["method"], rec["protocol_id"])] += rec["timings"]["total_seconds"]
        for (method, proto), seconds in sorted(per.items()):
            print(f"{method:20s} {proto:32s} {seconds:7.1f} s")
        print(f"total wall time: {wall:.0f} s ({wall / 60:.1f} min; budget 15 min)")


if __name__ == "__main__":
    main()
