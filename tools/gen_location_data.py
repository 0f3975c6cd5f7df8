#!/usr/bin/env python3
"""Build phonecheck's compact location file (data/cn_location.bin) from two sources: the `phone`
package's phone.dat (PyPI `phone`, by ls0f/lovedboy) and libphonenumber's Chinese geocoding data
(PyPI `phonenumbers`, the Python port). See NOTICE for both licences.

    pip install phone==0.4.5 phonenumbers==9.0.43
    python3 tools/gen_location_data.py            # writes data/cn_location.bin and its report
    python3 tools/gen_location_data.py --check    # exits 1 when the committed files differ
    python3 tools/gen_location_data.py --dat other/phone.dat --out /tmp/newer.bin

How the two are merged, per 7-digit mobile prefix (the rule, and why):
  * both know it and agree: that place;
  * only one knows it: that one, except that libphonenumber's entries shorter than five digits
    (a segment-wide default such as `173` -> 北京) never fill a prefix: they name no real place;
  * both know it and disagree: phone.dat. Measured on phone.dat 2312 against libphonenumber
    9.0.43, libphonenumber's side of a disagreement is almost always coarser or older: the
    principal city of a shared area code (酒泉 for 嘉峪关, 西安 for 咸阳), a renamed city (襄樊,
    襄阳 since 2010), or a segment default (北京). Every disagreement is listed, grouped, in
    data/cn_location_report.txt, with the carrier comparison below.
  * Area codes: phone.dat's, plus libphonenumber's area codes phone.dat lacks.
Carriers are not taken from either file: phonecheck's segment table (src/number/segments.rs,
from the MIIT allocations) names them. The report compares phone.dat's card type and
libphonenumber's carrier by prefix per segment, so that a change in either shows up here.

libphonenumber's place names (山东省济南市) are read into phone.dat's vocabulary (山东, 济南) by
matching the province and city names phone.dat uses.

A newer file made this way can replace the embedded one at start-up (`number.location_data`).

Format (all integers little-endian), read by src/number/location.rs:
    magic        b"PCLOC1\\n"
    version      u8 length + UTF-8            e.g. "phone.dat-2312+libphonenumber-9.0.43"
    regions      u16 count, then per region: province, city, area code (each u8 length + UTF-8)
    area codes   u16 count, then per entry: area code (u8 length + ASCII), u16 region index
    runs         u32 count, then count x u32 first 7-digit prefix, then count x u16 region index
                 (0xFFFF = no data); a run covers prefixes up to the next run's start.
"""
import argparse
import collections
import os
import struct
import sys

MAGIC = b"PCLOC1\n"
NO_REGION = 0xFFFF
PHONE_VERSION = "0.4.5"
PHONENUMBERS_VERSION = "9.0.43"
# libphonenumber entries shorter than this many digits (after 86) are segment-wide defaults.
MIN_FILL_DIGITS = 5
# Suffixes of province names in libphonenumber's Chinese place names.
PROVINCE_SUFFIXES = ("省", "市", "壮族自治区", "回族自治区", "维吾尔自治区", "自治区")
# Suffixes of prefecture names, dropped when a name is not one phone.dat knows.
CITY_SUFFIXES = ("市", "地区", "自治州", "盟")
# phone.dat's card types, as operators (4, 5, 6 are virtual operators on the named network).
CARD_OPERATORS = {1: "China Mobile", 2: "China Unicom", 3: "China Telecom", 4: "China Telecom",
                  5: "China Unicom", 6: "China Mobile", 7: "China Broadnet"}


def read_phone_dat(path):
    buf = open(path, "rb").read()
    version, first = struct.unpack("<4si", buf[:8])
    count = (len(buf) - first) // 9
    records = {}
    rows = []
    for i in range(count):
        prefix, offset, card_type = struct.unpack_from("<iiB", buf, first + 9 * i)
        if offset not in records:
            end = buf.index(b"\0", offset)
            records[offset] = buf[offset:end].decode("utf-8")
        province, city, _zip, area_code = records[offset].split("|")
        rows.append((prefix, (province, city, area_code), card_type))
    rows.sort()
    return version.decode("ascii"), rows


class Libphonenumber:
    """libphonenumber's Chinese geocoding (longest prefix) and carrier data."""

    def __init__(self):
        import phonenumbers
        from phonenumbers.carrierdata import CARRIER_DATA
        from phonenumbers.geodata import GEOCODE_DATA

        if phonenumbers.__version__ != PHONENUMBERS_VERSION:
            sys.exit(f"phonenumbers {phonenumbers.__version__} is installed; this generator is "
                     f"pinned to {PHONENUMBERS_VERSION}: pip install "
                     f"phonenumbers=={PHONENUMBERS_VERSION}")
        self.version = f"libphonenumber-{PHONENUMBERS_VERSION}"
        self.places = {k[2:]: v["zh"] for k, v in GEOCODE_DATA.items()
                       if k.startswith("86") and "zh" in v}
        self.carriers = {k[2:]: v["en"] for k, v in CARRIER_DATA.items() if k.startswith("86")}

    @staticmethod
    def longest(table, digits):
        for n in range(len(digits), 0, -1):
            if digits[:n] in table:
                return digits[:n], table[digits[:n]]
        return None, None

    def place(self, prefix7):
        key, name = self.longest(self.places, str(prefix7))
        if key is None or not key.startswith("1") or len(key) < 3:
            return None, None
        return key, name

    def area_codes(self):
        """Fixed-line area codes (with trunk 0) and their place names. Area codes are 10, 2x and
        three digits from 3 to 9; the table's other short keys (`33`, `024100`) are defaults for
        ranges of numbers, not area codes."""
        return {"0" + k: v for k, v in self.places.items()
                if k == "10" or (len(k) == 2 and k[0] == "2") or (len(k) == 3 and k[0] in "3456789")}


class Vocabulary:
    """Reads libphonenumber's place names (广东省深圳市) as phone.dat's (广东, 深圳)."""

    def __init__(self, regions):
        self.by_place = collections.defaultdict(collections.Counter)
        for province, city, area_code in regions:
            self.by_place[(province, city)][area_code] += 1
        self.provinces = sorted({p for p, _ in self.by_place}, key=len, reverse=True)
        self.cache = {}

    def read(self, name):
        if name not in self.cache:
            self.cache[name] = self._read(name)
        return self.cache[name]

    def _read(self, name):
        province = next((p for p in self.provinces if name.startswith(p)), None)
        if province is None:
            return None
        rest = name[len(province):]
        for suffix in PROVINCE_SUFFIXES:
            if rest.startswith(suffix) and rest != suffix:
                rest = rest[len(suffix):]
                break
        if rest in ("", "市"):
            rest = province
        known = [c for p, c in self.by_place if p == province and rest.startswith(c)]
        if known:
            return province, max(known, key=len)
        for suffix in CITY_SUFFIXES:
            if rest.endswith(suffix) and len(rest) > len(suffix) + 1:
                rest = rest[: -len(suffix)]
                break
        return province, rest

    def area_code(self, place, lib_area_codes):
        """The area code of a place: phone.dat's most common, else libphonenumber's."""
        counter = self.by_place.get(place)
        if counter:
            return counter.most_common(1)[0][0]
        for code, name in sorted(lib_area_codes.items()):
            if self.read(name) == place:
                return code
        return ""


def merge(rows, lib):
    """Merges phone.dat rows with libphonenumber; returns (prefix -> region, area code -> region,
    report lines)."""
    dat = {prefix: region for prefix, region, _ in rows}
    cards = {prefix: card for prefix, _, card in rows}
    vocabulary = Vocabulary(set(dat.values()))
    lib_areas = lib.area_codes()
    merged = {}
    disagreements = collections.defaultdict(list)
    filled = []
    for prefix in range(1_300_000, 2_000_000):
        key, name = lib.place(prefix)
        theirs = vocabulary.read(name) if name else None
        ours = dat.get(prefix)
        if ours is not None:
            merged[prefix] = ours
            if theirs is not None and theirs != ours[:2]:
                disagreements[(ours[:2], name)].append(prefix)
        elif theirs is not None and len(key) >= MIN_FILL_DIGITS:
            merged[prefix] = (*theirs, vocabulary.area_code(theirs, lib_areas))
            filled.append((prefix, merged[prefix]))

    # Several cities can share an area code (024: 沈阳, 抚顺, 本溪, 铁岭); a fixed line is placed in
    # the one with most mobile prefixes, which is the area's principal city.
    prefixes_by_area = collections.defaultdict(collections.Counter)
    for region in merged.values():
        prefixes_by_area[region[2]][region] += 1
    area_codes = {code: counter.most_common(1)[0][0]
                  for code, counter in prefixes_by_area.items() if code}
    added_areas = []
    for code, name in sorted(lib_areas.items()):
        place = vocabulary.read(name)
        if code not in area_codes and place is not None:
            area_codes[code] = (*place, code)
            added_areas.append((code, name))

    report = [f"# {lib.version} against phone.dat: generated by tools/gen_location_data.py",
              "",
              f"## Prefixes only libphonenumber knows, filled from it: {len(filled)}"]
    report += [f"{p}\t{r[0]}\t{r[1]}\t{r[2]}" for p, r in filled]
    report += ["", f"## Area codes only libphonenumber knows, added: {len(added_areas)}"]
    report += [f"{code}\t{name}" for code, name in added_areas]
    total = sum(len(v) for v in disagreements.values())
    report += ["", f"## Place disagreements, phone.dat kept: {total} prefixes",
               "# count\tphone.dat\tlibphonenumber\tfirst prefixes"]
    for (ours, name), prefixes in sorted(disagreements.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        report.append(f"{len(prefixes)}\t{ours[0]} {ours[1]}\t{name}\t"
                      + " ".join(map(str, prefixes[:3])))
    report += ["", "## Carrier: phone.dat's card type against libphonenumber's carrier by prefix",
               "# prefixes where they differ, by 4-digit block ('-': libphonenumber has none)",
               "# block\tphone.dat\tlibphonenumber\tprefixes"]
    differ = collections.Counter()
    for prefix, card in cards.items():
        ours = CARD_OPERATORS.get(card, f"type {card}")
        _, theirs = lib.longest(lib.carriers, str(prefix))
        if ours != theirs:
            differ[(str(prefix)[:4], ours, theirs or "-")] += 1
    for (block, ours, theirs), n in sorted(differ.items()):
        report.append(f"{block}\t{ours}\t{theirs}\t{n}")
    return merged, area_codes, report


def lp(text):
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"string too long: {text!r}")
    return struct.pack("<B", len(data)) + data


def build(version, merged, area_code_regions):
    regions = []
    index = {}

    def region_index(region):
        if region not in index:
            index[region] = len(regions)
            regions.append(region)
        return index[region]

    prefix_region = [(prefix, region_index(region)) for prefix, region in sorted(merged.items())]
    area_codes = sorted((code, region_index(region)) for code, region in area_code_regions.items())

    runs = []
    previous = None
    for prefix, region in prefix_region:
        if previous is not None and prefix == previous[0] + 1 and region == previous[1]:
            previous = (prefix, region)
            continue
        if previous is not None and prefix != previous[0] + 1:
            runs.append((previous[0] + 1, NO_REGION))
        runs.append((prefix, region))
        previous = (prefix, region)
    if previous is not None:
        runs.append((previous[0] + 1, NO_REGION))

    out = bytearray(MAGIC)
    out += lp(version)
    out += struct.pack("<H", len(regions))
    for province, city, area_code in regions:
        out += lp(province) + lp(city) + lp(area_code)
    out += struct.pack("<H", len(area_codes))
    for code, region in area_codes:
        out += lp(code) + struct.pack("<H", region)
    out += struct.pack("<I", len(runs))
    out += b"".join(struct.pack("<I", start) for start, _ in runs)
    out += b"".join(struct.pack("<H", region) for _, region in runs)
    return bytes(out), len(regions), len(area_codes), len(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dat = None
    try:
        import phone

        default_dat = os.path.join(os.path.dirname(phone.__file__), "phone.dat")
        installed = getattr(phone, "__version__", None)
        if installed and installed != PHONE_VERSION:
            sys.exit(f"phone {installed} is installed; pinned: pip install phone=={PHONE_VERSION}")
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--dat", default=default_dat, help="path of phone.dat")
    parser.add_argument("--out", default=os.path.join(root, "data", "cn_location.bin"))
    parser.add_argument("--report", default=os.path.join(root, "data", "cn_location_report.txt"))
    parser.add_argument("--check", action="store_true",
                        help="compare with --out and --report instead of writing them")
    args = parser.parse_args()
    if not args.dat:
        sys.exit("phone.dat not found: pip install phone, or pass --dat")
    dat_version, rows = read_phone_dat(args.dat)
    lib = Libphonenumber()
    merged, area_codes, report = merge(rows, lib)
    version = f"phone.dat-{dat_version}+{lib.version}"
    data, regions, areas, runs = build(version, merged, area_codes)
    report_text = "\n".join(report) + "\n"
    if args.check:
        same = open(args.out, "rb").read() == data
        same_report = open(args.report, encoding="utf-8").read() == report_text
        for path, ok in ((args.out, same), (args.report, same_report)):
            print(f"{path}: {'up to date' if ok else 'DIFFERS from the generator output'}")
        sys.exit(0 if same and same_report else 1)
    with open(args.out, "wb") as f:
        f.write(data)
    with open(args.report, "w", encoding="utf-8") as f:
        f.write(report_text)
    print(f"{args.out}: {len(data)} bytes, version {version}, {len(rows)} phone.dat prefixes, "
          f"{len(merged)} merged, {regions} regions, {areas} area codes, {runs} runs; "
          f"report {args.report} ({len(report)} lines)")


if __name__ == "__main__":
    main()
