"""Rich tables for scan results and feature splits (CLI output)."""

from __future__ import annotations

from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table

from .scan import SKIP_REASONS, ScanResult


def _fmt_skips(skips: dict) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(skips.items())) or "-"


def scan_tables(result: ScanResult) -> list[Table]:
    rows = result.summary()
    table = Table(title=f"{result.root} ({result.layout} layout)", show_lines=False)
    for col, justify in (
        ("language", "left"), ("source", "left"), ("clips", "right"), ("keywords", "right"), ("speakers", "right"),
        ("train", "right"), ("val", "right"), ("test", "right"), ("spk tr/va/te", "right"), ("split rule", "left"),
        ("hours", "right"), ("formats", "left"), ("skipped", "left"),
    ):
        table.add_column(col, justify=justify)
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_lang[row["language"]].append(row)
    for lang in sorted(by_lang):
        lang_rows = by_lang[lang]
        for row in lang_rows:
            speakers = f"{row['speakers']} (per-clip hash)" if row["speakers_hashed"] else str(row["speakers"])
            if row["language"] == "*":
                speakers = f"{row['speakers']} files"
            table.add_row(
                row["language"], row["source"], str(row["clips"]), str(row["keywords"]), speakers,
                str(row["train"]), str(row["val"]), str(row["test"]),
                f"{row['speakers_train']}/{row['speakers_val']}/{row['speakers_test']}", row["split_mode"],
                f"{row['hours']:.2f}", " ".join(f"{k} {v}" for k, v in sorted(row["containers"].items())), _fmt_skips(row["skipped"]),
            )
        if len(lang_rows) > 1:
            skips: Counter = Counter()
            for row in lang_rows:
                skips.update(row["skipped"])
            table.add_row(
                f"[bold]{lang}[/bold]", "[bold]all[/bold]", f"[bold]{sum(r['clips'] for r in lang_rows)}[/bold]",
                str(len({r.label for r in result.records if r.language == lang})), "",
                *(str(sum(r[s] for r in lang_rows)) for s in ("train", "val", "test")), "", "",
                f"{sum(r['hours'] for r in lang_rows):.2f}", "", _fmt_skips(dict(skips)),
                end_section=True,
            )
        else:
            table.rows[-1].end_section = True
    tables = [table]
    counts = result.skip_counts()
    if not counts:
        return tables
    skip_table = Table(title=f"skipped files: {len(result.skipped)}")
    skip_table.add_column("reason")
    skip_table.add_column("files", justify="right")
    skip_table.add_column("meaning")
    skip_table.add_column("example")
    for reason in sorted(counts):
        example = next(s for s in result.skipped if s.reason == reason)
        skip_table.add_row(reason, str(counts[reason]), SKIP_REASONS.get(reason, ""), f"{example.path}: {example.detail}")
    tables.append(skip_table)
    return tables


def _console() -> Console:
    console = Console()
    # Piped output (logs, CI) would be cut to 80 columns; tables need about 150.
    return console if console.is_terminal else Console(width=160)


def print_scan(result: ScanResult, *, elapsed_s: float | None = None, verbose: bool = False, console: Console | None = None) -> None:
    console = console or _console()
    for t in scan_tables(result):
        console.print(t)
    n_clips = len(result.clips)
    line = f"{n_clips} clips, {len(result.noise)} noise files, {len(result.skipped)} skipped"
    if elapsed_s is not None:
        line += f", scanned in {elapsed_s:.1f} s"
    console.print(line)
    hashed = sorted(result.hashed_speakers)
    if hashed:
        console.print(
            "[yellow]note:[/yellow] no speaker ids in "
            + ", ".join(f"{lang}/{src}" for lang, src in hashed)
            + ": each clip is its own pseudo-speaker, so those splits are by clip, not by speaker."
        )
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if verbose:
        for s in result.skipped:
            console.print(f"skipped {s.path}: {s.reason} ({s.detail})")


def print_feature_splits(splits: dict, *, elapsed_s: float | None = None, console: Console | None = None) -> None:
    console = console or _console()
    any_split = next(iter(splits.values()))
    table = Table(title=f"features {any_split.x.shape[1:]} per clip; labels: {', '.join(any_split.labels)}")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("speakers", justify="right")
    table.add_column("per class")
    table.add_column("skipped", justify="right")
    for name, sp in splits.items():
        counts = Counter(int(v) for v in sp.y)
        table.add_row(
            name, str(len(sp.y)), str(len(set(s for s in sp.speakers if s))),
            " ".join(f"{sp.labels[i]}:{counts.get(i, 0)}" for i in range(len(sp.labels))), str(len(sp.skipped)),
        )
    console.print(table)
    # Every file the builder could not use is named with its reason (bad noise files, manifest
    # rows whose audio is gone or no longer decodes), not only counted.
    for name, sp in splits.items():
        for s in sp.skipped:
            console.print(f"skipped ({name}) {s.path}: {s.reason} ({s.detail})")
        for note in getattr(sp, "notes", ()):
            console.print(f"[yellow]note ({name}):[/yellow] {note}")
    if elapsed_s is not None:
        console.print(f"built in {elapsed_s:.1f} s")


def data_check_table(check) -> Table:
    """The data check as one table: a row per keyword, totals last (fits 80 columns).

    Durations are min-max seconds; levels are dBFS (RMS: quietest clip / median clip; peak: loudest)."""
    table = Table(title=f"data check: {check.root} ({check.layout} layout, language {check.language})")
    for col, justify in (("keyword", "left"), ("clips", "right"), ("spk", "right"), ("tr/va/te", "right"),
                         ("dur s", "right"), ("RMS dB min/med", "right"), ("peak dB", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for k in check.keywords:
        d, lv = k.duration_s, k.rms_dbfs
        table.add_row(k.keyword, str(k.clips), str(k.speakers), "/".join(str(k.splits.get(s, 0)) for s in ("train", "val", "test")),
                      f"{d[0]:.2f}-{d[2]:.2f}", f"{lv[0]:.0f}/{lv[1]:.0f}", f"{k.peak_dbfs_max:.1f}")
    if table.rows:
        table.rows[-1].end_section = True
    speakers = f"{check.speakers}" if check.speakers_from_names else f"{check.speakers}*"
    table.add_row("[bold]all[/bold]", str(sum(k.clips for k in check.keywords)), speakers, "", "", "", "")
    return table


def print_data_check(check, *, verbose: bool = False, console: Console | None = None) -> None:
    """Table, then every flagged and skipped clip by name (the first 20 of each unless verbose), warnings and errors."""
    from rich.markup import escape

    from .check import FLAG_REASONS

    console = console or _console()
    console.print(data_check_table(check))
    if not check.speakers_from_names:
        console.print("* per-clip pseudo-speakers: the file names carry no speaker ids")
    elif check.speaker_rule:
        console.print(escape(f"speakers: {check.speakers} inferred from the file names ({check.speaker_rule}), e.g. "
                             f"{', '.join(check.speaker_examples)}; --speaker-regex overrides"))
    for what, items, meanings in (("flagged", check.flagged, FLAG_REASONS), ("skipped", check.skipped, SKIP_REASONS)):
        shown = items if verbose else items[:20]
        for path, reason, detail in shown:
            console.print(escape(f"{what} {path}: {reason} ({detail}; {meanings.get(reason, '')})"))
        if len(items) > len(shown):
            console.print(f"... and {len(items) - len(shown)} more {what} clip(s)")
    for w in check.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")
    for e in check.errors:
        console.print(f"[red]error:[/red] {escape(e)}")
