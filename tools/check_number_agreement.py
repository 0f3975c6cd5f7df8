#!/usr/bin/env python3
"""Compare phonecheck's offline analysis with libphonenumber's (the `phonenumbers` Python port) on
a generated corpus of numbers of every kind, and fail below the agreement phonecheck states.

    pip install phonenumbers==9.0.43
    cargo build --bin phonecheck
    python3 tools/check_number_agreement.py [--bin target/debug/phonecheck] [--count 20000]
                                            [--show 5] [--corpus-out corpus.txt]

The corpus is deterministic (seeded): Chinese mobiles, fixed lines (area code + 7 or 8 digits, the
first digit 2-9), toll-free, shared-cost and premium-rate numbers; Indonesian, Singaporean and
Pakistani mobiles and fixed lines, written nationally and internationally; and the kinds where
phonecheck departs from libphonenumber on purpose (README, "Where phonecheck differs"), which are
reported but not held to the threshold. phonecheck reads it through `phonecheck analyze`.

Compared per number: validity; the type when both call it valid (phonecheck's data cards,
IoT and satellite numbers count as libphonenumber's MOBILE); E.164; the carrier (phonecheck's
host network for a virtual operator); outside China, the place. Disagreements are listed by kind.
"""
import argparse
import collections
import json
import os
import random
import subprocess
import sys

PHONENUMBERS_VERSION = "9.0.43"
# Validity must agree on at least this share of every held kind, and type, E.164, carrier and
# place on at least this share of the numbers both call valid.
THRESHOLD = 0.99
# Kinds where phonecheck differs from libphonenumber on purpose: reported, not held.
DELIBERATE = {
    "cn_fixed_0_1": "subscriber numbers never begin with 0 or 1 (numbering plan)",
    "cn_fixed_95_96": "95xxx(x)/96xxx(x) behind an area code are service numbers",
    "cn_segments_16x_19x_14x": "segments by MIIT allocation (146/148/149, 1610, 1749 ...)",
}
TYPE_AS_LIBPHONENUMBER = {"DATA_CARD": "MOBILE", "IOT": "MOBILE", "SATELLITE": "MOBILE"}


def cn_area_codes():
    from phonenumbers.geodata import GEOCODE_DATA

    codes = set()
    for key in GEOCODE_DATA:
        if not key.startswith("86"):
            continue
        k = key[2:]
        if k == "10" or (len(k) == 2 and k[0] == "2") or (len(k) == 3 and k[0] in "3456789"):
            codes.add(k)
    return sorted(codes)


def place_prefixes(country_code):
    from phonenumbers.geodata import GEOCODE_DATA

    return sorted(k[len(country_code):] for k in GEOCODE_DATA
                  if k.startswith(country_code) and len(k) > len(country_code))


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def corpus(count):
    """[(kind, text, default region)], deterministic."""
    rng = random.Random(15)
    areas = cn_area_codes()
    id_areas = [p for p in place_prefixes("62") if not p.startswith("8")]
    pk_areas = [p for p in place_prefixes("92") if not p.startswith("3")]

    def cn_mobile():
        segment = str(rng.choice([s for s in range(130, 200)
                                  if s not in (140, 141, 142, 143, 144, 146, 148, 149, 160, 161,
                                               168, 174, 194)]))
        number = segment + digits(rng, 8)
        return rng.choice([number, "+86 " + number, "0086" + number, "86" + number]), "CN"

    def cn_fixed(first="23456789"):
        area = rng.choice(areas)
        subscriber = rng.choice(first) + digits(rng, rng.choice([6, 7]))
        if rng.random() < 0.5:
            return f"0{area}-{subscriber}", "CN"
        return f"+86 {area} {subscriber}", "CN"

    def cn_fixed_95_96():
        area = rng.choice(areas)
        return f"0{area}-{rng.choice(['95', '96'])}{digits(rng, rng.choice([3, 4]))}", "CN"

    def cn_segments():
        prefix = rng.choice(["146", "148", "149", "1610", "1749", "17406", "1349"])
        return prefix + digits(rng, 11 - len(prefix)), "CN"

    def sg():
        first = rng.choice("3689")
        number = first + digits(rng, 7)
        if rng.random() < 0.1:
            number = "1800" + digits(rng, 7)
        return rng.choice([("+65 " + number, "CN"), (number, "SG")])

    def id_mobile():
        number = "8" + rng.choice("1235789") + digits(rng, rng.choice([7, 8, 9, 10]))
        return rng.choice([("+62 " + number, "CN"), ("0" + number, "ID"), ("62" + number, "ID")])

    def id_fixed():
        area = rng.choice(id_areas)
        number = area + digits(rng, rng.choice([5, 6, 7, 8]) - max(0, len(area) - 3))
        return rng.choice([("+62 " + number, "CN"), ("0" + number, "ID")])

    def pk_mobile():
        number = "3" + digits(rng, 9)
        return rng.choice([("+92 " + number, "CN"), ("0" + number, "PK")])

    def pk_fixed():
        area = rng.choice(pk_areas)
        number = area + digits(rng, rng.choice([7, 8]) - max(0, len(area) - 2))
        return rng.choice([("+92 " + number, "CN"), ("0" + number, "PK")])

    kinds = [
        ("cn_mobile", 0.15, cn_mobile),
        ("cn_fixed", 0.30, cn_fixed),
        ("cn_toll_free", 0.02, lambda: ("800" + digits(rng, 7), "CN")),
        ("cn_shared_cost", 0.02, lambda: ("400-" + digits(rng, 3) + "-" + digits(rng, 4), "CN")),
        ("cn_premium_rate", 0.02, lambda: ("+86 16" + rng.choice("08") + digits(rng, 5), "CN")),
        ("cn_fixed_0_1", 0.03, lambda: cn_fixed("01")),
        ("cn_fixed_95_96", 0.02, cn_fixed_95_96),
        ("cn_segments_16x_19x_14x", 0.02, cn_segments),
        ("id_mobile", 0.12, id_mobile),
        ("id_fixed", 0.08, id_fixed),
        ("sg", 0.08, sg),
        ("pk_mobile", 0.08, pk_mobile),
        ("pk_fixed", 0.06, pk_fixed),
    ]
    out = []
    for name, share, make in kinds:
        for _ in range(round(count * share)):
            text, region = make()
            out.append((name, text, region))
    return out


def libphonenumber(text, region):
    import phonenumbers
    from phonenumbers import carrier, geocoder

    try:
        n = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    valid = phonenumbers.is_valid_number(n)
    place = geocoder.description_for_number(n, "en")
    country = geocoder.country_name_for_number(n, "en")
    return {
        "e164": phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164),
        "valid": valid,
        "type": phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(n)),
        "carrier": carrier.name_for_number(n, "en") or "",
        "place": "" if place == country else place,
    }


def phonecheck(binary, items):
    """`phonecheck analyze` per default region; returns JSON answers in the corpus order."""
    by_region = collections.defaultdict(list)
    for i, (_, text, region) in enumerate(items):
        by_region[region].append(i)
    answers = [None] * len(items)
    for region, indices in by_region.items():
        stdin = "".join(items[i][1] + "\n" for i in indices)
        out = subprocess.run([binary, "analyze", "--region", region], input=stdin, text=True,
                             capture_output=True, check=True).stdout.splitlines()
        for i, line in zip(indices, out, strict=True):
            answers[i] = json.loads(line)
    return answers


def ours(answer):
    if "error" in answer:
        return None
    kind = answer.get("type", "NUMBER_TYPE_UNSPECIFIED").removeprefix("NUMBER_TYPE_")
    carrier = answer.get("carrier") or {}
    region = answer.get("regionCode")
    return {
        "e164": answer.get("e164", ""),
        "valid": answer.get("valid", False),
        "type": TYPE_AS_LIBPHONENUMBER.get(kind, kind),
        "carrier": carrier.get("hostNetwork") or carrier.get("name", ""),
        "place": (answer.get("location") or {}).get("city", "") if region != "CN" else None,
    }


def compare(items, answers):
    stats = collections.defaultdict(collections.Counter)
    examples = collections.defaultdict(list)
    for (kind, text, region), answer in zip(items, answers, strict=True):
        a, b = ours(answer), libphonenumber(text, region)
        s = stats[kind]
        s["numbers"] += 1
        if a is None or b is None:
            field_diffs = [] if a is None and b is None else ["parse"]
            s["validity"] += not field_diffs
        else:
            field_diffs = [] if a["valid"] == b["valid"] else ["valid"]
            s["validity"] += a["valid"] == b["valid"]
            if a["valid"] and b["valid"]:
                s["both valid"] += 1
                for field in ("type", "e164", "carrier", "place"):
                    if a[field] is None:
                        s[field] += 1  # not compared (Chinese places: see README)
                    elif field == "carrier" and not b[field] and a[field]:
                        # libphonenumber names no carrier (China's MVNO, satellite, IoT and
                        # data segments): nothing to disagree with.
                        s[field] += 1
                        s["carrier phonecheck only"] += 1
                    elif a[field] == b[field]:
                        s[field] += 1
                    else:
                        field_diffs.append(field)
        for field in field_diffs:
            examples[(kind, field)].append((text, region, a, b))
    return stats, examples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--bin", default=os.path.join(target, "debug", "phonecheck"))
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--show", type=int, default=3, help="disagreements shown per kind")
    parser.add_argument("--corpus-out", help="also write the corpus (kind, text, region) here")
    args = parser.parse_args()
    import phonenumbers

    if phonenumbers.__version__ != PHONENUMBERS_VERSION:
        sys.exit(f"phonenumbers {phonenumbers.__version__} is installed; "
                 f"pip install phonenumbers=={PHONENUMBERS_VERSION}")
    items = corpus(args.count)
    if args.corpus_out:
        with open(args.corpus_out, "w", encoding="utf-8") as f:
            f.writelines(f"{k}\t{t}\t{r}\n" for k, t, r in items)
    stats, examples = compare(items, phonecheck(args.bin, items))

    print(f"{len(items)} numbers; phonecheck against libphonenumber {PHONENUMBERS_VERSION}")
    print(f"{'kind':<26}{'numbers':>8}{'validity':>10}{'type':>8}{'e164':>8}"
          f"{'carrier':>9}{'place':>8}  held")
    failed = []
    held = collections.Counter()
    for kind, s in stats.items():
        n, both = s["numbers"], s["both valid"]
        shares = {"validity": s["validity"] / n}
        for field in ("type", "e164", "carrier", "place"):
            shares[field] = s[field] / both if both else 1.0
        is_held = kind not in DELIBERATE
        row = "".join(f"{shares[f]:>{w}.2%}" for f, w in
                      (("validity", 10), ("type", 8), ("e164", 8), ("carrier", 9), ("place", 8)))
        print(f"{kind:<26}{n:>8}{row}  {'yes' if is_held else 'no: ' + DELIBERATE[kind]}")
        if is_held:
            held["numbers"] += n
            held["validity"] += s["validity"]
            failed += [f"{kind} {f} {v:.2%}" for f, v in shares.items() if v < THRESHOLD]
    only = sum(s["carrier phonecheck only"] for s in stats.values())
    print(f"carrier counted as agreeing where libphonenumber names none: {only} numbers")
    print(f"held kinds: validity agrees on {held['validity'] / held['numbers']:.2%} "
          f"of {held['numbers']} numbers (threshold {THRESHOLD:.0%} per kind and field)")
    for (kind, field), rows in sorted(examples.items()):
        print(f"\n{kind}: {len(rows)} disagree on {field}")
        for text, region, a, b in rows[: args.show]:
            print(f"  {text!r} ({region}): phonecheck {a} | libphonenumber {b}")
    if failed:
        print("\nFAILED, below the threshold: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
