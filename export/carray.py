"""C arrays and generated headers for firmware, generic and dependency-free (standard library only).

Firmware constants (model bytes, sizes, labels, frontend parameters, arena size) are generated from
Python, never hand-copied: `write_model_sources()` writes a 16-byte-aligned model array plus a
header with everything the application needs, and the lower-level `render_*` helpers let the
firmware generator build its own sources the same way. Output is deterministic (same inputs,
identical bytes) and written atomically.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from polykws.core import ConfigError, atomic_write_text

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Bool _Complex _Imaginary".split()
)
INT_TYPES = {
    "int8_t": (-(2**7), 2**7 - 1),
    "uint8_t": (0, 2**8 - 1),
    "int16_t": (-(2**15), 2**15 - 1),
    "uint16_t": (0, 2**16 - 1),
    "int32_t": (-(2**31), 2**31 - 1),
    "uint32_t": (0, 2**32 - 1),
}


def c_identifier(name: str) -> str:
    """`name` if it is a valid, non-reserved C identifier; ConfigError otherwise."""
    if not isinstance(name, str) or not _IDENT.fullmatch(name) or name in _C_KEYWORDS:
        raise ConfigError(f"{name!r} is not a usable C identifier")
    return name


def c_string(text: str) -> str:
    """A C string literal for `text` (UTF-8), escaping everything outside printable ASCII.

    Octal escapes are always three digits, so a following digit can never extend them.
    """
    out = ['"']
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F and ch != "?":  # '?' avoids trigraphs
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def c_float(value: float) -> str:
    """A float literal that reads back as the same IEEE single (9 significant digits round-trip)."""
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"cannot write non-finite float {value!r} to C")
    text = f"{value:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_value(value: Any) -> str:
    """bool/int/float/str as a C constant expression."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if value < -(2**63) or value >= 2**64:
            raise ConfigError(f"integer {value} does not fit 64 bits")
        if value > 2**31 - 1:
            return f"{value}u" if value < 2**32 else f"{value}ull"
        if value < -(2**31):
            return f"({value + 1}ll - 1)"
        if value == -(2**31):
            return "(-2147483647 - 1)"
        return str(value)
    if isinstance(value, float):
        return c_float(value)
    if isinstance(value, str):
        return c_string(value)
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} as a C constant")


def _check_int(value: int, ctype: str) -> int:
    lo, hi = INT_TYPES[ctype]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{value!r} does not fit {ctype}")
    return value


def render_int_array(
    name: str,
    values: Iterable[int],
    ctype: str = "uint8_t",
    *,
    align: int = 4,
    section: str | None = None,
    static: bool = False,
    per_line: int = 16,
) -> str:
    """`const <ctype> name[n] = {...};` aligned to `align` bytes, optionally in a linker section."""
    c_identifier(name)
    if ctype not in INT_TYPES:
        raise ConfigError(f"ctype must be one of {sorted(INT_TYPES)}, got {ctype!r}")
    if align < 1 or align & (align - 1):
        raise ConfigError(f"alignment must be a power of two, got {align}")
    vals = [_check_int(int(v), ctype) for v in values]
    hexfmt = ctype.startswith("u")
    width = int(re.search(r"\d+", ctype).group()) // 4
    attrs = [f"aligned({align})"]
    if section:
        if not re.fullmatch(r"\.[A-Za-z0-9_.]+", section):
            raise ConfigError(f"bad section name {section!r}")
        attrs.append(f'section("{section}")')
    head = f"{'static ' if static else ''}const {ctype} {name}[{max(len(vals), 1)}] __attribute__(({', '.join(attrs)})) = {{"
    lines = [head]
    for i in range(0, len(vals), per_line):
        chunk = vals[i : i + per_line]
        if hexfmt:
            lines.append("    " + ", ".join(f"0x{v:0{width}x}" for v in chunk) + ",")
        else:
            lines.append("    " + ", ".join(str(v) for v in chunk) + ",")
    if not vals:
        lines.append("    0, /* empty */")
    lines.append("};")
    return "\n".join(lines) + "\n"


def render_byte_array(name: str, data: bytes, *, align: int = 16, section: str | None = None, static: bool = False) -> str:
    """A `const uint8_t` array of `data`, 16-byte aligned by default (TFLM wants models aligned)."""
    return render_int_array(name, bytes(data), "uint8_t", align=align, section=section, static=static)


def render_string_array(name: str, strings: Sequence[str], *, static: bool = False) -> str:
    c_identifier(name)
    body = "".join(f"    {c_string(s)},\n" for s in strings) or "    0,\n"
    storage = "static " if static else ""
    return f"{storage}const char *const {name}[{max(len(strings), 1)}] = {{\n{body}}};\n"


@dataclass(frozen=True)
class Define:
    name: str
    value: Any
    comment: str = ""

    def render(self) -> str:
        # An object-like macro, or a function-like one such as OPS(X) for X-macro lists.
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(\(\s*[A-Za-z_][A-Za-z0-9_]*(\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*\s*\))?", self.name)
        if not m:
            raise ConfigError(f"{self.name!r} is not a usable C macro name")
        c_identifier(m.group(1))
        text = self.value if isinstance(self.value, RawC) else c_value(self.value)
        line = f"#define {self.name} {text}"
        return line + (f"  /* {_comment(self.comment)} */" if self.comment else "")


class RawC(str):
    """A C expression written as-is (for macros such as X-macro op lists)."""


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def render_header(
    guard: str,
    *,
    banner: str,
    defines: Sequence[Define] = (),
    declarations: Sequence[str] = (),
    includes: Sequence[str] = ("stdint.h",),
) -> str:
    c_identifier(guard)
    parts = [f"/* {_comment(banner)} */", f"#ifndef {guard}", f"#define {guard}", ""]
    parts += [f"#include <{inc}>" for inc in includes]
    if includes:
        parts.append("")
    parts += [d.render() for d in defines]
    if declarations:
        parts += ["", "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
        parts += list(declarations)
        parts += ["", "#ifdef __cplusplus", "}", "#endif"]
    parts += ["", f"#endif /* {guard} */", ""]
    return "\n".join(parts)


def render_source(*, banner: str, includes: Sequence[str], definitions: Sequence[str]) -> str:
    parts = [f"/* {_comment(banner)} */"] + [f'#include "{inc}"' for inc in includes] + [""]
    parts += list(definitions)
    return "\n".join(parts) + ("\n" if not parts[-1].endswith("\n") else "")


def frontend_defines(frontend: Mapping[str, Any] | Any, prefix: str = "FRONTEND") -> list[Define]:
    """One #define per frontend field (a FrontendConfig or its dict), plus its config hash if given."""
    if hasattr(frontend, "to_dict"):
        fields = frontend.to_dict()
        fhash = frontend.config_hash() if hasattr(frontend, "config_hash") else None
    else:
        fields, fhash = dict(frontend), None
    out = []
    for key in sorted(fields):
        value = fields[key]
        if isinstance(value, (bool, int, float, str)):
            out.append(Define(f"{prefix}_{key.upper()}", value))
    if fhash:
        out.append(Define(f"{prefix}_CONFIG_HASH", fhash, "polykws FrontendConfig.config_hash()"))
    return out


def write_model_sources(
    out_dir: str | Path,
    name: str,
    model: bytes,
    *,
    labels: Sequence[str],
    frontend: Mapping[str, Any] | Any,
    arena_bytes: int,
    source: str = "",
    extra_defines: Sequence[Define] = (),
) -> tuple[Path, Path]:
    """`<name>.h` + `<name>.c`: the model as a 16-byte-aligned array, its size, labels, frontend, arena.

    The header declares `<name>_model` / `<name>_model_len` and `<name>_labels`; macros are
    upper-case `<NAME>_*`.
    """
    c_identifier(name)
    if not labels:
        raise ConfigError("a model needs at least one label")
    if arena_bytes <= 0:
        raise ConfigError(f"arena_bytes must be > 0, got {arena_bytes}")
    up = name.upper()
    banner = f"Generated by polykws.export.carray from {source or 'a model'}; do not edit."
    defines = [
        Define(f"{up}_MODEL_BYTES", len(model)),
        Define(f"{up}_ARENA_BYTES", int(arena_bytes), "tensor arena for TFLM"),
        Define(f"{up}_NUM_LABELS", len(labels)),
        *frontend_defines(frontend, f"{up}_FRONTEND"),
        *extra_defines,
    ]
    decls = [
        f"extern const uint8_t {name}_model[];",
        f"extern const uint32_t {name}_model_len;",
        f"extern const char *const {name}_labels[{len(labels)}];",
    ]
    header = render_header(f"{up}_H_", banner=banner, defines=defines, declarations=decls)
    src = render_source(
        banner=banner,
        includes=[f"{name}.h"],
        definitions=[
            render_byte_array(f"{name}_model", model, align=16),
            f"const uint32_t {name}_model_len = {len(model)}u;\n",
            render_string_array(f"{name}_labels", labels),
        ],
    )
    out_dir = Path(out_dir)
    h = atomic_write_text(out_dir / f"{name}.h", header)
    c = atomic_write_text(out_dir / f"{name}.c", src)
    return h, c
