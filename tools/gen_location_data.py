#!/usr/bin/env python3
"""Build phonecheck's compact location file (data/cn_location.bin) from the `phone` package's
phone.dat (PyPI `phone`, by ls0f/lovedboy; see NOTICE).

    pip install phone==0.4.5
    python3 tools/gen_location_data.py            # writes data/cn_location.bin
    python3 tools/gen_location_data.py --dat other/phone.dat --out /tmp/newer.bin

A newer file made this way can replace the embedded one at start-up (`number.location_data`).

Format (all integers little-endian), read by src/number/location.rs:
    magic        b"PCLOC1\\n"
    version      u8 length + UTF-8            e.g. "phone.dat-2312"
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


def read_phone_dat(path):
    buf = open(path, "rb").read()
    version, first = struct.unpack("<4si", buf[:8])
    count = (len(buf) - first) // 9
    records = {}
    rows = []
    for i in range(count):
        prefix, offset, _card_type = struct.unpack_from("<iiB", buf, first + 9 * i)
        if offset not in records:
            end = buf.index(b"\0", offset)
            records[offset] = buf[offset:end].decode("utf-8")
        rows.append((prefix, records[offset]))
    rows.sort()
    return version.decode("ascii"), rows


def lp(text):
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"string too long: {text!r}")
    return struct.pack("<B", len(data)) + data


def build(version, rows):
    regions = []
    index = {}
    prefixes_by_area = collections.defaultdict(collections.Counter)
    prefix_region = []
    for prefix, record in rows:
        province, city, _zip, area_code = record.split("|")
        key = (province, city, area_code)
        if key not in index:
            index[key] = len(regions)
            regions.append(key)
        prefix_region.append((prefix, index[key]))
        prefixes_by_area[area_code][index[key]] += 1

    # Several cities can share an area code (024: 沈阳, 抚顺, 本溪, 铁岭); a fixed line is placed in
    # the one with most mobile prefixes, which is the area's principal city.
    area_codes = sorted(
        (code, counter.most_common(1)[0][0]) for code, counter in prefixes_by_area.items() if code
    )

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
    out += lp(f"phone.dat-{version}")
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
        import phone  # noqa: F401

        default_dat = os.path.join(os.path.dirname(phone.__file__), "phone.dat")
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--dat", default=default_dat, help="path of phone.dat")
    parser.add_argument("--out", default=os.path.join(root, "data", "cn_location.bin"))
    args = parser.parse_args()
    if not args.dat:
        sys.exit("phone.dat not found: pip install phone, or pass --dat")
    version, rows = read_phone_dat(args.dat)
    data, regions, areas, runs = build(version, rows)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data)} bytes, version phone.dat-{version}, "
          f"{len(rows)} prefixes, {regions} regions, {areas} area codes, {runs} runs")


if __name__ == "__main__":
    main()
