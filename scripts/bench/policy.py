"""An independent Python reading of configs/genai-uk-eea-ch-pause.yaml, for the benchmark.

The DuckDB reference job (duckdb_job.py), the floors (floors.py) and the mismatch explainer in
compare.py use this module; none of it is shared with corpusgate's Rust code. It follows the
README: region values are trimmed and ASCII-uppercased; UK/XI -> GB, EL -> GR, IC/EA -> ES; ISO
alpha-3 -> alpha-2 (XKX -> XK); the 249 assigned alpha-2 codes and XK are kept; null, empty,
non-ASCII and anything else (EU included) are unknown. Consent strings match after trim,
case-insensitively.

`python3 scripts/bench/policy.py` prints how every spelling the generator can emit normalises
and checks the README's examples.
"""

import itertools
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from iso3166 import ALPHA2_TO_ALPHA3  # noqa: E402

ALPHA2 = set(ALPHA2_TO_ALPHA3) | {"XK"}
ALPHA3_TO_ALPHA2 = {a3: a2 for a2, a3 in ALPHA2_TO_ALPHA3.items()}
ALPHA3_TO_ALPHA2["XKX"] = "XK"
ALIASES = {"UK": "GB", "XI": "GB", "EL": "GR", "IC": "ES", "EA": "ES"}

EU_MEMBERS = (
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)
EU_TERRITORIES = "AX GF GP MQ RE YT MF".split()
EEA = set(EU_MEMBERS) | set(EU_TERRITORIES) | {"IS", "LI", "NO"}
PAUSED = EEA | {"GB", "CH"}
assert len(EU_MEMBERS) == 27 and len(EEA) == 37 and len(PAUSED) == 39

CONSENT_GRANTED = {"opt_in", "yes"}
CONSENT_DENIED = {"opt_out", "no"}

# The rules of the policy, in order; "allowed" is the only include rule.
RULES = ("region-paused", "unknown-region", "opted-out", "allowed")
KEEP_RULE = "allowed"

# Rust's str::trim strips Unicode White_Space; these are the ASCII ones, which is all the SQL
# side trims (the generator only pads with spaces).
ASCII_WS = " \t\n\r\x0b\x0c"


def normalize_region(value):
    """The normalised alpha-2 code, or None for unknown."""
    if value is None:
        return None
    t = value.strip()
    if not t.isascii():
        return None
    u = t.upper()
    if len(u) == 2:
        u = ALIASES.get(u, u)
        return u if u in ALPHA2 else None
    if len(u) == 3:
        return ALPHA3_TO_ALPHA2.get(u)
    return None


def consent_state(value):
    if value is None:
        return "unknown"
    v = value.strip().lower()
    if v in CONSENT_GRANTED:
        return "granted"
    if v in CONSENT_DENIED:
        return "denied"
    return "unknown"


def decide(country, consent):
    """(rule, region) for one row, rules in the policy's order."""
    region = normalize_region(country)
    if region in PAUSED:
        return "region-paused", region
    if region is None:
        return "unknown-region", region
    if consent_state(consent) == "denied":
        return "opted-out", region
    return "allowed", region


def _case_variants(code):
    return {"".join(p) for p in itertools.product(*[(c.lower(), c.upper()) for c in code])}


def normalized_spelling_table():
    """(key, alpha-2) for every ASCII case variant of every alpha-2, alias and alpha-3 code.

    Joined against trim(country) this is the full normalisation for any input: a value that is
    not in the table (empty, non-ASCII, EU, junk) is unknown. Case variants instead of upper()
    keep non-ASCII values from uppercasing into a code (DuckDB's upper is Unicode-aware).
    """
    table = {}
    for code in ALPHA2 | set(ALIASES):
        for v in _case_variants(code):
            table[v] = ALIASES.get(code, code)
    for a3, a2 in ALPHA3_TO_ALPHA2.items():
        for v in _case_variants(a3):
            table[v] = a2
    for k, v in table.items():
        assert normalize_region(k) == v, (k, v)
    return sorted(table.items())


GEN_SOURCE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "gen_corpus.rs"


def generator_spellings(source=GEN_SOURCE):
    """Every country spelling examples/gen_corpus.rs can write (COUNTRIES, JUNK_COUNTRIES and
    ALLOWED_COUNTRIES)."""
    text = pathlib.Path(source).read_text()
    out = []
    for const in ("COUNTRIES", "JUNK_COUNTRIES", "ALLOWED_COUNTRIES"):
        m = re.search(r"const " + const + r": &\[&str\] = &\[(.*?)\];", text, re.S)
        if not m:
            raise SystemExit(f"policy.py: cannot find {const} in {source}")
        out.extend(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
    return sorted(set(out))


def generator_spelling_table(source=GEN_SOURCE):
    """(raw spelling, alpha-2 or None) for every spelling the generator emits, plus every
    alpha-3 code (a raw-value mapping: exact for generated data, not for arbitrary input)."""
    rows = {s: normalize_region(s) for s in generator_spellings(source)}
    for a3, a2 in ALPHA3_TO_ALPHA2.items():
        rows.setdefault(a3, a2)
    return sorted(rows.items())


def _selftest():
    for raw, want in [
        ("gb", "GB"), (" uk ", "GB"), ("Uk", "GB"), ("XI", "GB"), ("EL", "GR"), ("IC", "ES"),
        ("EA", "ES"), ("gbr", "GB"), ("DEU", "DE"), ("\tfr\n", "FR"), ("NO", "NO"),
        ("XK", "XK"), ("XKX", "XK"), ("EU", None), ("EEA", None), ("", None), ("   ", None),
        ("G B", None), ("ÜK", None), ("zz", None), ("XX", None), ("United Kingdom", None),
        ("GBRR", None), ("1", None), ("G", None), ("REU", "RE"), (None, None),
    ]:
        assert normalize_region(raw) == want, (raw, normalize_region(raw), want)
    assert decide("RE", "opt_in")[0] == "region-paused"
    assert decide("US", " NO ")[0] == "opted-out"
    assert decide("US", None)[0] == "allowed"
    assert decide("EU", "opt_in")[0] == "unknown-region"
    print(f"{len(normalized_spelling_table())} normalised spellings; generator spellings:")
    for s in generator_spellings():
        r = normalize_region(s)
        print(f"  {s!r:18} -> {r or 'unknown':8} {decide(s, 'opt_in')[0]}")
    print("policy.py self-test: ok")


if __name__ == "__main__":
    _selftest()
