#!/usr/bin/env python3
"""Compile libphonenumber's metadata for the regions phonecheck serves itself (CN, ID, SG, PK) into
data/number_plan.bin: each region's number-type patterns as one minimal digit automaton (DFA),
plus carrier names by prefix (CN, ID, SG, PK) and place names by prefix (ID, PK).

    pip install phonenumbers==9.0.43
    python3 tools/gen_number_plan.py              # writes data/number_plan.bin
    python3 tools/gen_number_plan.py --check      # exits 1 when the committed file differs

Why a DFA: libphonenumber decides a number's type by trying up to eleven regular expressions, one
after the other (general description, premium rate, toll free, ..., fixed line, mobile). Every one
of them is a finite language over the digits 0-9, so all of them together compile into one
deterministic automaton whose states carry a bit per pattern that accepts there. phonecheck walks
it once per number (one table look-up per digit) and applies libphonenumber's order to the bits:
the same answer, without a regular expression at run time.

Format (all integers little-endian), read by src/number/plan.rs:
    magic      b"PCPLAN1\\n"
    version    str                      e.g. "libphonenumber-9.0.43"
    regions    u8 count, then per region:
        id str, country code u16, national prefix for parsing str (digits; empty: none)
        descs   u8 count (= len(DESCS)), then per desc: possible lengths u32 mask,
                local-only lengths u32 mask, example number str
        dfa     u32 state count, then per state: u16 accept mask, 10 x u32 next state
                (0xFFFFFFFF: no number continues this way); state 0 is the start
    tables     u8 count, then per table: name str, u32 entry count, then per entry:
               prefix str (country code + digits), name str
where str is a u8 length + UTF-8.
"""
import argparse
import os
import re
import struct
import sys

try:  # Python 3.11+ keeps the parser here; older versions as sre_parse.
    import re._parser as sre_parse
    import re._constants as sre_constants
except ImportError:  # pragma: no cover
    import sre_parse
    import sre_constants

PHONENUMBERS_VERSION = "9.0.43"
MAGIC = b"PCPLAN1\n"
REGIONS = ["CN", "ID", "SG", "PK"]
# Order matters: it is the bit order, read by src/number/plan.rs (`Desc`).
DESCS = [
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
]
DEAD = 0xFFFFFFFF
ALL_DIGITS = frozenset(range(10))


class Nfa:
    """A Thompson automaton over digits: per state, epsilon moves and (digit set, target) moves."""

    def __init__(self):
        self.eps = []
        self.moves = []

    def state(self):
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def build(self, items):
        """Builds a parsed (sub)pattern; returns its (start, end) states."""
        start = end = self.state()
        for op, arg in items:
            s, e = self.node(op, arg)
            self.eps[end].append(s)
            end = e
        return start, end

    def node(self, op, arg):
        if op == sre_constants.LITERAL:
            return self.leaf(frozenset([arg - ord("0")]) & ALL_DIGITS)
        if op == sre_constants.IN:
            return self.leaf(char_class(arg))
        if op == sre_constants.SUBPATTERN:
            return self.build(arg[-1])
        if op == sre_constants.BRANCH:
            start, end = self.state(), self.state()
            for alternative in arg[1]:
                s, e = self.build(alternative)
                self.eps[start].append(s)
                self.eps[e].append(end)
            return start, end
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, body = arg
            if high == sre_constants.MAXREPEAT:
                raise ValueError("unbounded repetition: not a finite numbering plan")
            start = end = self.state()
            for _ in range(low):
                s, e = self.build(body)
                self.eps[end].append(s)
                end = e
            optional_ends = []
            for _ in range(high - low):
                s, e = self.build(body)
                self.eps[end].append(s)
                optional_ends.append(end)
                end = e
            for e in optional_ends:
                self.eps[e].append(end)
            return start, end
        raise ValueError(f"unsupported regular expression construct {op}")

    def leaf(self, digits):
        start, end = self.state(), self.state()
        self.moves[start].append((digits, end))
        return start, end

    def closure(self, states):
        seen = set(states)
        stack = list(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)


def char_class(items):
    digits = set()
    negate = False
    for op, arg in items:
        if op == sre_constants.NEGATE:
            negate = True
        elif op == sre_constants.LITERAL:
            digits.add(arg - ord("0"))
        elif op == sre_constants.RANGE:
            digits.update(range(arg[0] - ord("0"), arg[1] - ord("0") + 1))
        elif op == sre_constants.CATEGORY and arg == sre_constants.CATEGORY_DIGIT:
            digits.update(ALL_DIGITS)
        else:
            raise ValueError(f"unsupported character class item {op}")
    digits &= ALL_DIGITS
    return frozenset(ALL_DIGITS - digits if negate else digits)


def compile_dfa(patterns):
    """One minimal DFA for several patterns: returns [(accept mask, [next x 10])], start first.

    `patterns` is a list of (bit, regular expression or None); a state's mask has the bit of every
    pattern that matches the whole input read so far.
    """
    nfa = Nfa()
    starts, ends = [], {}
    for bit, pattern in patterns:
        if not pattern or pattern == "NA":
            continue
        s, e = nfa.build(sre_parse.parse(pattern))
        starts.append(s)
        ends[e] = ends.get(e, 0) | (1 << bit)
    ids = {}
    table = []
    queue = [nfa.closure(starts)]
    ids[queue[0]] = 0
    table.append(None)
    while queue:
        current = queue.pop()
        mask = 0
        for s in current:
            mask |= ends.get(s, 0)
        nexts = []
        for d in range(10):
            targets = {t for s in current for digits, t in nfa.moves[s] if d in digits}
            if not targets:
                nexts.append(DEAD)
                continue
            target = nfa.closure(targets)
            if target not in ids:
                ids[target] = len(table)
                table.append(None)
                queue.append(target)
            nexts.append(ids[target])
        table[ids[current]] = (mask, nexts)
    return minimise(table)


def minimise(table):
    """Merges equivalent states. The languages are finite, so the automaton has no cycles and two
    states are equivalent exactly when their masks and (canonical) successors are equal."""
    canonical = {}
    signature_ids = {}
    out = []

    def visit(state):
        if state == DEAD:
            return DEAD
        if state in canonical:
            return canonical[state]
        mask, nexts = table[state]
        signature = (mask, tuple(visit(n) for n in nexts))
        if signature not in signature_ids:
            signature_ids[signature] = len(out)
            out.append(signature)
        canonical[state] = signature_ids[signature]
        return canonical[state]

    sys.setrecursionlimit(10_000)
    start = visit(0)
    # Renumber so that the start state is 0 (it is visited last, being the root).
    order = [start] + [i for i in range(len(out)) if i != start]
    new_id = {old: new for new, old in enumerate(order)}
    return [
        (out[old][0], [DEAD if n == DEAD else new_id[n] for n in out[old][1]]) for old in order
    ]


def run_dfa(dfa, digits):
    state = 0
    for c in digits:
        state = dfa[state][1][ord(c) - ord("0")]
        if state == DEAD:
            return 0
    return dfa[state][0]


def self_check(region, dfa, patterns):
    """Compares the automaton with the regular expressions on deterministic samples: every
    pattern's own example-like prefixes, extended and cut at every length."""
    import random

    rng = random.Random(region)
    compiled = [(bit, re.compile(p)) for bit, p in patterns if p and p != "NA"]
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        if rng.random() < 0.5:
            # Random strings rarely match; steer half of them through the automaton's live paths.
            digits, state = "", 0
            for _ in range(rng.randint(1, 17)):
                live = [d for d in range(10) if dfa[state][1][d] != DEAD]
                if not live:
                    break
                d = rng.choice(live)
                digits += str(d)
                state = dfa[state][1][d]
        expected = sum(1 << bit for bit, rx in compiled if rx.fullmatch(digits))
        if run_dfa(dfa, digits) != expected:
            raise AssertionError(f"{region}: automaton and patterns disagree on {digits}")


def length_mask(lengths):
    mask = 0
    for n in lengths or ():
        mask |= 1 << n
    return mask


def lp(text):
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"string too long: {text!r}")
    return struct.pack("<B", len(data)) + data


def prefix_table(data, country_codes, language):
    """Entries of a libphonenumber prefix table (carrier or geocoding) for some country codes."""
    rows = []
    for prefix, names in data.items():
        if any(prefix.startswith(cc) for cc in country_codes):
            name = names.get(language) or names.get("en")
            if name:
                rows.append((prefix, name))
    return sorted(rows)


def build():
    import phonenumbers
    from phonenumbers.carrierdata import CARRIER_DATA
    from phonenumbers.geodata import GEOCODE_DATA
    from phonenumbers.phonemetadata import PhoneMetadata

    if phonenumbers.__version__ != PHONENUMBERS_VERSION:
        sys.exit(
            f"phonenumbers {phonenumbers.__version__} is installed; this generator is pinned to "
            f"{PHONENUMBERS_VERSION}: pip install phonenumbers=={PHONENUMBERS_VERSION}"
        )
    out = bytearray(MAGIC)
    out += lp(f"libphonenumber-{PHONENUMBERS_VERSION}")
    out += struct.pack("<B", len(REGIONS))
    summary = []
    for region in REGIONS:
        m = PhoneMetadata.metadata_for_region(region)
        prefix = m.national_prefix_for_parsing or ""
        if region != "CN" and not re.fullmatch(r"\d*", prefix):
            # CN is parsed by phonecheck's own rules; the others must stay simple for plan.rs.
            raise ValueError(f"{region}: national prefix for parsing {prefix!r} is not a literal")
        if m.same_mobile_and_fixed_line_pattern:
            raise ValueError(f"{region}: identical fixed-line and mobile patterns are not supported")
        if m.national_prefix_transform_rule:
            raise ValueError(f"{region}: a national prefix transform rule is not supported")
        out += lp(region) + struct.pack("<H", m.country_code)
        out += lp(prefix if region != "CN" else m.national_prefix or "")
        out += struct.pack("<B", len(DESCS))
        patterns = []
        for bit, name in enumerate(DESCS):
            desc = getattr(m, name)
            pattern = desc.national_number_pattern if desc is not None else None
            patterns.append((bit, pattern))
            lengths = desc.possible_length if desc is not None else ()
            local = desc.possible_length_local_only if desc is not None else ()
            example = (desc.example_number or "") if desc is not None else ""
            out += struct.pack("<II", length_mask(lengths), length_mask(local)) + lp(example)
        dfa = compile_dfa(patterns)
        self_check(region, dfa, patterns)
        out += struct.pack("<I", len(dfa))
        for mask, nexts in dfa:
            out += struct.pack("<H10I", mask, *nexts)
        summary.append(f"{region} {len(dfa)} states")
    codes = {r: str(PhoneMetadata.metadata_for_region(r).country_code) for r in REGIONS}
    tables = [
        # Chinese carrier names come from phonecheck's segment table; libphonenumber's are kept
        # to compare against it (src/number/segments.rs tests).
        ("carrier", prefix_table(CARRIER_DATA, list(codes.values()), "en")),
        ("place", prefix_table(GEOCODE_DATA, [codes["ID"], codes["PK"]], "en")),
    ]
    out += struct.pack("<B", len(tables))
    for name, rows in tables:
        out += lp(name) + struct.pack("<I", len(rows))
        for prefix, text in rows:
            out += lp(prefix) + lp(text)
        summary.append(f"{len(rows)} {name} prefixes")
    return bytes(out), ", ".join(summary)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--out", default=os.path.join(root, "data", "number_plan.bin"))
    parser.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing it"
    )
    args = parser.parse_args()
    data, summary = build()
    if args.check:
        with open(args.out, "rb") as f:
            same = f.read() == data
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from the generator output'}")
        sys.exit(0 if same else 1)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data)} bytes; {summary}")


if __name__ == "__main__":
    main()
