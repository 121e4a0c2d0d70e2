"""The run report: report/index.html + PNG figures + report/report.md, from one JSON-able dict.

`render_report(data, out_dir)` knows nothing about how the figures were obtained; the pipeline's
report stage collects them from the stage artifacts (see stages.py, `collect_report_data`).
Missing measurements are shown as "-" with the reason, never invented.

data = {
  "title", "config_name", "generated", "host", "command",
  "model": {"name", "params", "macs", "frontend": {...}},
  "base": {"language", "labels", "test_clips", "float_acc", "int8_acc", "tflite_bytes", "arena_bytes"},
  "languages": [{"lang", "method", "budget", "keywords", "labels", "test_clips", "float_acc", "int8_acc",
                 "updated_params", "blob_bytes", "tflite_bytes", "confusion" (rows = true, cols = predicted)}],
  "sweep": [{"lang", "method", "budget", "seed", "updated_params", "float_acc", "int8_acc", "blob_bytes"}],
  "flash": {"base_bytes", "blob_bytes": {lang: n}, "full_model_bytes": {lang: n}, "flash_image_bytes"},
  "firmware": {"status": "measured" | "skipped", "reason", "rows": [{"board", "kernels", "lang", "accuracy",
               "host_accuracy", "instructions", "flash_bytes", "ram_bytes"}]},
  "stages": [{"name", "built", "wall_s", "cpu_s", "key"}],
  "notes": [str],
}
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from polykws.core import atomic_path, atomic_write_text

REPORT_FILES = ("index.html", "report.md")


# --- formatting ---------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100.0 * x:.1f}%"


def num(x: float | int | None) -> str:
    return "-" if x is None else f"{int(x):,}"


def kib(x: float | int | None) -> str:
    return "-" if x is None else f"{x / 1024:.1f} KiB"


def delta_pt(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{100.0 * (b - a):+.1f} pt"


# --- figures ------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    # No timestamp in PNG metadata: same figures give the same bytes.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return path


def _sweep_points(sweep: Sequence[dict], xkey: str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """{(method, lang): [(x, accuracy)]}, x and accuracy averaged over seeds per budget."""
    groups: dict[tuple[str, str, Any], list[tuple[float, float]]] = {}
    for r in sweep:
        acc = r["int8_acc"] if r.get("int8_acc") is not None else r.get("float_acc")
        if acc is not None and r.get(xkey):
            groups.setdefault((r["method"], r["lang"], r.get("budget")), []).append((float(r[xkey]), float(acc)))
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (method, lang, _), g in groups.items():
        points.setdefault((method, lang), []).append((sum(p[0] for p in g) / len(g), sum(p[1] for p in g) / len(g)))
    return {k: sorted(v) for k, v in points.items()}


def plot_accuracy_vs_bytes(sweep: Sequence[dict], path: Path) -> Path | None:
    """Every method on one shared log-x axis: accuracy (int8 where measured, else float) against blob bytes.

    Colour = method, marker = language; a line joins one method's budgets for one language.
    """
    if not sweep:
        return None
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _plt()
    xkey = "blob_bytes" if all(r.get("blob_bytes") for r in sweep) else "updated_params"
    points = _sweep_points(sweep, xkey)
    methods = sorted({m for m, _ in points})
    langs = sorted({lang for _, lang in points})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    markers = dict(zip(langs, "osD^v<>pP*X"))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for (method, lang), pts in sorted(points.items()):
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=markers.get(lang, "o"), ls="-" if len(pts) > 1 else "none",
                color=colors[method], ms=5, lw=1.2)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(("blob bytes" if xkey == "blob_bytes" else "updated params") + " (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[m], lw=2, label=m) for m in methods]
    handles += [plt.Line2D([], [], color="0.3", marker=markers.get(lg, "o"), ls="none", label=lg) for lg in langs]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("Accuracy vs. bytes (int8 TFLM where measured, else float)")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str, path: Path) -> Path:
    import numpy as np

    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = max(3.6, 0.36 * n + 1.8)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


def plot_flash_budget(flash: dict, path: Path) -> Path | None:
    blobs = flash.get("blob_bytes") or {}
    full = flash.get("full_model_bytes") or {}
    base = flash.get("base_bytes")
    if not base or not blobs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    langs = sorted(blobs)
    # Bar 1: base + blobs, stacked. Bar 2: one full model per language (base language included).
    left = 0.0
    ax.barh(1, base, color="#4c72b0", label="shared base")
    left = base
    cmap = plt.get_cmap("tab10")
    for i, lang in enumerate(langs):
        ax.barh(1, blobs[lang], left=left, color=cmap((i + 1) % 10), edgecolor="white")
        left += blobs[lang]
    left = 0.0
    for i, lang in enumerate(sorted(full)):
        ax.barh(0, full[lang], left=left, color="#dd8452", edgecolor="white")
        left += full[lang]
    total_shared = base + sum(blobs.values())
    total_full = sum(full.values()) if full else None
    ax.set_yticks([0, 1], [f"{len(full)} full models", f"base + {len(blobs)} blobs"])
    ax.set_xlabel("bytes of flash")
    ax.text(total_shared, 1, f"  {kib(total_shared)}", va="center", fontsize=9)
    if total_full:
        ax.text(total_full, 0, f"  {kib(total_full)}", va="center", fontsize=9)
        ax.set_xlim(0, max(total_full, total_shared) * 1.25)
    ax.set_title("Flash budget: one shared int8 base + per-language blobs vs. separate models")
    fig.tight_layout()
    return _save(fig, path)


# --- tables -------------------------------------------------------------------------------------
def language_rows(data: dict) -> list[list[str]]:
    rows = []
    base = data.get("base") or {}
    if base:
        rows.append([
            f"{base.get('language', '?')} (base)", "pretrained", "-", _kw(base.get("labels")), num(base.get("test_clips")),
            pct(base.get("float_acc")), pct(base.get("int8_acc")), delta_pt(base.get("float_acc"), base.get("int8_acc")), "-",
            num(base.get("params")), num(base.get("tflite_bytes")),
        ])
    for r in data.get("languages", []):
        rows.append([
            r["lang"], r.get("method", "-"), num(r.get("budget")), _kw(r.get("labels") or r.get("keywords")),
            num(r.get("test_clips")), pct(r.get("float_acc")), pct(r.get("int8_acc")),
            delta_pt(r.get("float_acc"), r.get("int8_acc")), pct((r.get("streaming") or {}).get("frr_at_1_fa_per_hour")),
            num(r.get("updated_params")), num(r.get("blob_bytes")),
        ])
    langs = data.get("languages", [])
    if len(langs) > 1:
        f, q = _mean([r.get("float_acc") for r in langs]), _mean([r.get("int8_acc") for r in langs])
        rows.append([f"**mean of {len(langs)}**", "", "", "", num(sum(r.get("test_clips") or 0 for r in langs)), f"**{pct(f)}**",
                     f"**{pct(q)}**", delta_pt(f, q), pct(_mean([(r.get("streaming") or {}).get("frr_at_1_fa_per_hour") for r in langs])),
                     num(_mean([r.get("updated_params") for r in langs])),
                     num(_mean([r.get("blob_bytes") for r in langs]))])
    return rows


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def method_rows(sweep: Sequence[dict]) -> list[list[str]]:
    """Mean over languages (and seeds) per (method, budget): the comparison the sweep is for."""
    groups: dict[tuple, list[dict]] = {}
    for r in sweep:
        groups.setdefault((r["method"], r.get("budget") or 0), []).append(r)
    rows = []
    for (method, budget), rs in sorted(groups.items()):
        rows.append([method, num(budget) if budget else "-", str(len({r["lang"] for r in rs})), str(len({r.get("seed") for r in rs})),
                     num(_mean([r.get("updated_params") for r in rs])), pct(_mean([r.get("float_acc") for r in rs])),
                     pct(_mean([r.get("int8_acc") for r in rs])), num(_mean([r.get("blob_bytes") for r in rs]))])
    return rows


METHOD_HEADER = ["method", "budget", "languages", "seeds", "mean updated params", "mean float acc", "mean int8 acc", "mean blob bytes"]

LANG_HEADER = ["language", "method", "budget", "keywords", "test clips", "float acc", "int8 acc (TFLM)", "int8 − float",
               "FRR @1 FA/h (streams)", "updated params", "blob bytes"]
STREAM_HEADER = ["language", "test hours (negatives)", "keywords", "FRR @0.5 FA/h", "FRR @1 FA/h", "shipped threshold",
                 "shipped: FRR", "shipped: FA/h", "median latency s"]


def streaming_rows(data: dict) -> list[list[str]]:
    rows = []
    for r in data.get("languages", []):
        st = r.get("streaming")
        if not st:
            continue
        thr = str(st["threshold"]) + ("" if st.get("threshold_met_target", True) else f" (val misses {st['target_fa_per_hour']:g} FA/h)")
        lat = st.get("median_latency_s")
        rows.append([r["lang"], f"{st['test_hours']:.2f} ({st['test_negative_hours']:.2f})", num(st.get("test_keywords")),
                     pct(st.get("frr_at_0_5_fa_per_hour")), pct(st.get("frr_at_1_fa_per_hour")), thr, pct(st.get("shipped_frr")),
                     f"{st['shipped_fa_per_hour']:.1f}", "-" if lat is None else f"{lat:.2f}"])
    return rows


STREAM_NOTE = ("Long streams of each language's test speakers: every test keyword clip once, plus unknown words, other "
               "languages' words and noise alone, in background noise at each SNR; the streaming detector "
               "(docs/STREAMING.md) over the host TFLM runtime. FRR at 0.5 and 1 FA/h is the best test operating point; the "
               "shipped threshold was chosen on validation streams and travels in the language's blob.")


def plot_streaming_det(data: dict, path: Path) -> Path | None:
    from polykws.pipeline.streameval import plot_det

    rows = [r["streaming"]["curve"] for r in data.get("languages", []) if (r.get("streaming") or {}).get("curve")]
    return plot_det(rows, path) if rows else None


def _kw(labels: Iterable[str] | None) -> str:
    if not labels:
        return "-"
    labels = list(labels)
    kws = [k for k in labels if not (k.startswith("_") and k.endswith("_"))]
    extra = len(labels) - len(kws)
    # A pretraining head (e.g. 166 words in 8 languages) would swamp the table: show its size instead.
    s = ", ".join(kws) if len(kws) <= 24 else f"{len(kws)} words ({', '.join(kws[:6])}, …)"
    return s + (f" (+{extra} filler)" if extra else "")


def flash_rows(flash: dict) -> list[list[str]]:
    base = flash.get("base_bytes")
    blobs = flash.get("blob_bytes") or {}
    full = flash.get("full_model_bytes") or {}
    if not base:
        return []
    shared = base + sum(blobs.values())
    rows = [["shared int8 base", num(base), ""]]
    rows += [[f"blob {k}", num(v), f"{100 * v / base:.2f}% of base"] for k, v in sorted(blobs.items())]
    rows.append([f"**base + {len(blobs)} blobs**", f"**{num(shared)}**", ""])
    if full:
        tot = sum(full.values())
        rows.append([f"{len(full)} separate full int8 models", num(tot), f"shared layout uses {100 * shared / tot:.1f}%"])
    if flash.get("flash_image_bytes"):
        rows.append(["flash.bin (table + alignment + CRC)", num(flash["flash_image_bytes"]), ""])
    return rows


def clips_scored(n: Any, test_clips: Any) -> str:
    """How many test clips a firmware row scores, marked when it is a subset of the language's split.

    QEMU runs `firmware.bench_samples` clips per language, so its accuracy is not the language
    table's (which scores every test clip); the cell says so.
    """
    if n is None:
        return "-"
    if test_clips is None:
        return num(n)
    return f"all {num(n)}" if n >= test_clips else f"{num(n)}-clip subset of {num(test_clips)}"


def firmware_rows(fw: dict) -> list[list[str]]:
    return [[
        r.get("board", "-"), r.get("kernels", "-"), r.get("lang", "-"), clips_scored(r.get("n"), r.get("test_clips")),
        pct(r.get("accuracy")), pct(r.get("host_accuracy")),
        num(r.get("instructions")), num(r.get("flash_bytes")), num(r.get("ram_bytes")),
    ] for r in fw.get("rows", [])]


STAGE_HEADER = ["stage", "built (UTC)", "wall time", "CPU time", "key"]
FW_HEADER = ["board", "kernels", "language", "test clips scored", "on-QEMU acc", "host TFLM acc", "instructions / inference", "flash bytes", "RAM bytes"]


SKIP_HEADER = ["stage", "reason", "files", "listed in"]


def skipped_rows(data: dict) -> list[list[str]]:
    """One row per (stage, reason): every file a stage skipped is counted here, with its list."""
    return [[r["stage"], r["reason"], str(r["files"]), r["list"]] for r in data.get("skips") or []]


# --- writers ------------------------------------------------------------------------------------
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    def cell(c: str, tag: str) -> str:
        c = str(c)
        if c.startswith("**") and c.endswith("**"):
            return f"<{tag}><b>{html.escape(c[2:-2])}</b></{tag}>"
        return f"<{tag}>{html.escape(c)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "\n".join("<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 1180px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child, td:nth-child(4) { text-align: left; }
table.stages td:nth-child(2), table.stages td:nth-child(5) { text-align: left; font-family: monospace; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; } .figs figure { margin: 0; }
.figs img { max-width: 540px; border: 1px solid #eee; } img.wide { max-width: 100%; }
figcaption { font-size: .85em; color: #555; text-align: center; }
.note { background: #fff8e1; border-left: 4px solid #f0c000; padding: .5em .8em; margin: .6em 0; }
.skip { background: #fdecea; border-left: 4px solid #d9534f; padding: .5em .8em; }
"""


def render_report(data: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write index.html, report.md and the PNGs into `out_dir`; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(data, out)
    tables = _tables(data)
    written = [p for p in (figs["accuracy"], figs["flash"], figs["streaming"]) if p] + [p for _, p in figs["confusion"]]
    written.append(atomic_write_text(out / "index.html", _html(data, figs, tables)))
    written.append(atomic_write_text(out / "report.md", _markdown(data, figs, tables)))
    return written


def _title(data: dict[str, Any]) -> str:
    return data.get("title") or f"polykws run: {data.get('config_name', '?')}"


def _figures(data: dict[str, Any], out: Path) -> dict[str, Any]:
    conf: list[tuple[str, Path]] = []
    base = data.get("base") or {}
    if base.get("confusion"):
        lang = base.get("language")
        title = f"{lang} base (int8)" if base.get("confusion_kind") == "int8" else f"{lang} base"
        conf.append((f"{lang} (base)", plot_confusion(base["labels"], base["confusion"], title, out / f"confusion_base_{lang}.png")))
    for r in data.get("languages", []):
        if r.get("confusion"):
            title = f"{r['lang']} - {r.get('method')} ({r.get('confusion_kind', 'float')})"
            conf.append((r["lang"], plot_confusion(r["labels"], r["confusion"], title, out / f"confusion_{r['lang']}.png")))
    return {"accuracy": plot_accuracy_vs_bytes(data.get("sweep") or [], out / "accuracy_vs_bytes.png"),
            "flash": plot_flash_budget(data.get("flash") or {}, out / "flash_budget.png"), "confusion": conf,
            "streaming": plot_streaming_det(data, out / "streaming_det.png")}


SWEEP_HEADER = ["language", "method", "budget", "seed", "updated params", "float acc", "int8 acc", "blob bytes"]


def _tables(data: dict[str, Any]) -> dict[str, Any]:
    sweep = sorted(data.get("sweep") or [], key=lambda r: (r["lang"], r["method"], r.get("budget") or 0, r.get("seed", 0)))
    return {
        "languages": language_rows(data),
        "streaming": streaming_rows(data),
        "flash": flash_rows(data.get("flash") or {}),
        "firmware": data.get("firmware") or {"status": "skipped", "reason": "no firmware stage in this run"},
        "stages": [[s["name"], s.get("built", "-"), f"{s['wall_s']:.1f} s" if s.get("wall_s") is not None else "-",
                    f"{s['cpu_s']:.1f} s" if s.get("cpu_s") is not None else "-", s.get("key", "")] for s in data.get("stages", [])],
        "methods": method_rows(sweep),
        "sweep": [[r["lang"], r["method"], num(r.get("budget")), str(r.get("seed", "-")), num(r.get("updated_params")), pct(r.get("float_acc")),
                   pct(r.get("int8_acc")), num(r.get("blob_bytes"))] for r in sweep],
    }


def _html(data: dict[str, Any], figs: dict[str, Any], t: dict[str, Any]) -> str:
    title, model = _title(data), data.get("model") or {}
    fe = model.get("frontend") or {}
    meta_line = " · ".join(x for x in [
        f"config <code>{html.escape(str(data.get('config_name', '?')))}</code>",
        f"model {html.escape(str(model.get('name', '?')))} ({num(model.get('params'))} params, {num(model.get('macs'))} MACs)" if model else "",
        f"frontend {html.escape(str(fe.get('kind', '?')))} {fe.get('num_frames', '')}×{fe.get('num_features', '')}" if fe else "",
        f"generated {html.escape(str(data.get('generated', '')))} on {html.escape(str(data.get('host', '')))}",
    ] if x)
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class=meta>{meta_line}</p>"]
    if data.get("command"):
        parts.append(f"<p class=meta>command: <code>{html.escape(data['command'])}</code></p>")
    parts += [f"<div class=note>{html.escape(n)}</div>" for n in data.get("notes", [])]
    parts += ["<h2>Languages</h2>",
              "<p>Accuracy on each language's speaker-disjoint test split. int8 accuracy is the merged model's full-int8 "
              "TFLite run through the TFLite Micro kernels on the host (the device-equivalent evaluator). "
              "Updated params count every parameter the transfer changed, the language's head included.</p>",
              _html_table(LANG_HEADER, t["languages"])]
    parts.append("<h2>Streaming detection</h2>")
    if t["streaming"]:
        parts.append(f"<p>{html.escape(STREAM_NOTE)}</p>" + _html_table(STREAM_HEADER, t["streaming"]))
        if figs["streaming"]:
            parts.append(f'<img class=wide src="{figs["streaming"].name}" alt="DET curves, test streams">')
    else:
        parts.append(f"<p class=skip>{html.escape(data.get('streaming_reason') or 'Not scored on streams.')}</p>")
    if figs["accuracy"]:
        parts.append(f'<h2>Accuracy vs. bytes</h2><img class=wide src="{figs["accuracy"].name}" alt="accuracy vs bytes, every method">')
    if t["sweep"]:
        parts.append("<h3>Methods (mean over languages)</h3>" + _html_table(METHOD_HEADER, t["methods"]))
        parts.append("<details><summary>all adaptation jobs</summary>" + _html_table(SWEEP_HEADER, t["sweep"]) + "</details>")
    parts.append("<h2>Flash budget</h2>")
    parts.append(_html_table(["item", "bytes", ""], t["flash"]) if t["flash"] else "<p class=skip>No packed artifacts in this run.</p>")
    if figs["flash"]:
        parts.append(f'<img class=wide src="{figs["flash"].name}" alt="flash budget">')
    parts.append("<h2>Firmware</h2>")
    fw = t["firmware"]
    if fw.get("status") == "measured" and fw.get("rows"):
        parts.append(_html_table(FW_HEADER, firmware_rows(fw)) + (f"<p>{html.escape(fw['note'])}</p>" if fw.get("note") else ""))
    else:
        parts.append(f"<p class=skip>Firmware stage skipped: {html.escape(str(fw.get('reason', 'no reason recorded')))}</p>")
    if figs["confusion"]:
        parts.append("<h2>Confusion matrices</h2><div class=figs>")
        parts += [f'<figure><img src="{p.name}" alt="confusion {html.escape(lbl)}"><figcaption>{html.escape(lbl)}</figcaption></figure>'
                  for lbl, p in figs["confusion"]]
        parts.append("</div>")
    skip_rows = skipped_rows(data)
    parts.append("<h2>Skipped files</h2>")
    parts.append(_html_table(SKIP_HEADER, skip_rows) if skip_rows else "<p>No file was skipped.</p>")
    for w in data.get("warnings") or []:
        parts.append(f"<div class=note>{html.escape(w)}</div>")
    if t["stages"]:
        parts.append("<h2>Stages</h2>" + _html_table(STAGE_HEADER, t["stages"], "stages"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _markdown(data: dict[str, Any], figs: dict[str, Any], t: dict[str, Any]) -> str:
    model = data.get("model") or {}
    fe = model.get("frontend") or {}
    md = [f"# {_title(data)}", "", f"config `{data.get('config_name', '?')}`; generated {data.get('generated', '')} on {data.get('host', '')}"]
    if model:
        md.append(f"; model {model.get('name')} ({num(model.get('params'))} params, {num(model.get('macs'))} MACs)"
                  + (f", frontend {fe.get('kind')} {fe.get('num_frames', '')}x{fe.get('num_features', '')}" if fe else ""))
    md[-1] = md[-1] + "."
    if data.get("command"):
        md += ["", f"Command: `{data['command']}`"]
    md += [""] + [f"> {n}" for n in data.get("notes", [])]
    md += ["", "## Languages", "", _md_table(LANG_HEADER, t["languages"]), ""]
    md += ["## Streaming detection", ""]
    if t["streaming"]:
        md += [STREAM_NOTE, "", _md_table(STREAM_HEADER, t["streaming"]), ""]
        if figs["streaming"]:
            md += [f"![DET curves]({figs['streaming'].name})", ""]
    else:
        md += [data.get("streaming_reason") or "Not scored on streams.", ""]
    if t["sweep"]:
        md += ["## Methods (mean over languages)", "", _md_table(METHOD_HEADER, t["methods"]), ""]
    if figs["accuracy"]:
        md += [f"![accuracy vs bytes]({figs['accuracy'].name})", ""]
    if t["flash"]:
        md += ["## Flash budget", "", _md_table(["item", "bytes", ""], t["flash"]), ""]
    md += ["## Firmware", ""]
    fw = t["firmware"]
    if fw.get("status") == "measured" and fw.get("rows"):
        md += [_md_table(FW_HEADER, firmware_rows(fw)), ""] + ([fw["note"], ""] if fw.get("note") else [])
    else:
        md += [f"Skipped: {fw.get('reason', 'no reason recorded')}", ""]
    if figs["confusion"]:
        md += ["## Confusion matrices", ""] + [f"![{lbl}]({p.name})" for lbl, p in figs["confusion"]] + [""]
    skip_rows = skipped_rows(data)
    md += ["## Skipped files", "", _md_table(SKIP_HEADER, skip_rows) if skip_rows else "No file was skipped.", ""]
    md += [f"> {w}" for w in data.get("warnings") or []] + ([""] if data.get("warnings") else [])
    if t["stages"]:
        md += ["## Stages", "", _md_table(STAGE_HEADER, t["stages"]), ""]
    return "\n".join(md)
