//! The number plan: per-area-code fixed-line rules, premium rate, the merged location data,
//! libphonenumber's example numbers, foreign carriers, and E.164 round trips.

use proptest::prelude::*;

use super::plan::{Desc, plan};
use super::*;

fn analyze(input: &str, region: &str) -> NumberInfo {
    Analyzer::default()
        .analyze(input, region)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

/// Real cities and the local-number lengths their area codes take (subscriber numbers starting
/// 2 to 8; 9 also opens the five- and six-digit 95 services), from libphonenumber's fixed-line
/// pattern.
#[test]
fn local_number_length_by_city() {
    let table: &[(&str, &str, &[usize])] = &[
        ("010", "北京", &[8]),
        ("021", "上海", &[8]),
        ("020", "广州", &[8]),
        ("0755", "深圳", &[8]),
        ("0571", "杭州", &[8]),
        ("024", "沈阳", &[8]),
        ("028", "成都", &[8]),
        ("0411", "大连", &[8]),
        ("0898", "海口", &[8]),
        ("0310", "邯郸", &[7]),
        ("0335", "秦皇岛", &[7]),
        ("0911", "延安", &[7]),
        ("0931", "兰州", &[7]),
        ("0951", "银川", &[7]),
        ("0902", "哈密", &[7]),
        ("0719", "十堰", &[7]),
        ("0851", "贵阳", &[7, 8]),
        ("0754", "汕头", &[7, 8]),
    ];
    let a = Analyzer::default();
    for &(area, city, lengths) in table {
        for first in '2'..='8' {
            assert_eq!(
                cn::local_number_lengths(area, first),
                lengths,
                "{area} {city} first digit {first}"
            );
        }
        for len in 6..=9 {
            let input = format!("{area}-{}", "2".repeat(len));
            let info = a.analyze(&input, "").unwrap();
            assert_eq!(info.valid, lengths.contains(&len), "{input} ({city})");
            assert_eq!(info.number_type, NumberType::FixedLine, "{input}");
            assert_eq!(&*info.location.unwrap().city, city, "{input}");
        }
    }
}

#[test]
fn fixed_line_decisions() {
    // (input, type, valid): the cases and the deliberate departures.
    let cases: &[(&str, NumberType, bool)] = &[
        ("0755-2343973", NumberType::FixedLine, false),
        ("0755-23439738", NumberType::FixedLine, true),
        ("0571-7845445", NumberType::FixedLine, false),
        ("021-97944686", NumberType::FixedLine, true),
        ("010-92386875", NumberType::FixedLine, true),
        // Beijing numbers do not start with 1: libphonenumber's example is refused on purpose.
        ("+86 10 1234 5678", NumberType::FixedLine, false),
        ("010-02345678", NumberType::FixedLine, false),
        // The 12345 hotline dialled with Beijing's area code.
        ("010-12345", NumberType::Service, true),
        ("0571-96225", NumberType::Service, true),
        ("0755-95555", NumberType::Service, true),
        // Ningxia's area code 953, not a 95 service number.
        ("+86 953 2447084", NumberType::FixedLine, true),
        // Toll free behind Beijing's area code.
        ("010-8001234567", NumberType::TollFree, true),
    ];
    for &(input, number_type, valid) in cases {
        let info = analyze(input, "");
        assert_eq!(
            (info.number_type, info.valid),
            (number_type, valid),
            "{input}"
        );
    }
}

#[test]
fn premium_rate_information_services() {
    for input in ["+86 16812345", "16812345", "16012345"] {
        let info = analyze(input, "");
        assert_eq!(
            (info.number_type, info.valid),
            (NumberType::PremiumRate, true),
            "{input}"
        );
    }
    // 168 is no mobile segment: eleven digits are no number.
    assert!(!analyze("16812345678", "").valid);
}

/// libphonenumber's own example number for every type of CN, ID, SG and PK agrees, except the
/// fixed-line example of CN, refused on purpose (see `fixed_line_decisions`).
#[test]
fn libphonenumber_examples() {
    use Desc::*;
    let expected = [
        (FixedLine, NumberType::FixedLine),
        (Mobile, NumberType::Mobile),
        (TollFree, NumberType::TollFree),
        (PremiumRate, NumberType::PremiumRate),
        (SharedCost, NumberType::SharedCost),
        (PersonalNumber, NumberType::PersonalNumber),
        (Voip, NumberType::Voip),
        (Pager, NumberType::Pager),
        (Uan, NumberType::Uan),
        (Voicemail, NumberType::Voicemail),
    ];
    let mut checked = 0;
    for region in plan().regions() {
        for (desc, number_type) in expected {
            let example = region.example(desc);
            if example.is_empty() || (region.id, desc) == ("CN", FixedLine) {
                continue;
            }
            let info = analyze(&format!("+{}{example}", region.country_code), "");
            assert!(info.valid, "{} {desc:?} {example}", region.id);
            if region.id != "CN" {
                assert_eq!(info.number_type, number_type, "{} {example}", region.id);
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn carriers_and_places_outside_china() {
    let cases = [
        ("+62 812 3456 7890", "Telkomsel"),
        ("+62 815 1234 5678", "Indosat Ooredoo Hutchison"),
        ("+62 817 1234 5678", "XL"),
        ("+92 300 1234567", "Jazz"),
        ("+92 311 1234567", "Zong"),
        ("+92 333 1234567", "Ufone"),
        ("+65 9123 4567", "SingTel"),
    ];
    for (input, carrier) in cases {
        let info = analyze(input, "");
        assert_eq!(info.carrier.map(|c| c.name), Some(carrier), "{input}");
    }
    let jakarta = analyze("021 5550 1234", "ID");
    assert_eq!(jakarta.e164, "+622155501234");
    assert_eq!(&*jakarta.location.unwrap().city, "Greater Jakarta");
    let karachi = analyze("021 3456 7890", "PK");
    assert_eq!(&*karachi.location.unwrap().city, "Karachi");
    // A fixed line has no carrier by prefix.
    assert!(analyze("+65 6123 4567", "").carrier.is_none());
}

#[test]
fn foreign_national_forms_parse_like_libphonenumber() {
    // (input, region, E.164, valid)
    let cases = [
        ("0812 3456 7890", "ID", "+6281234567890", true),
        ("6281234567890", "ID", "+6281234567890", true),
        ("+62 0812 3456 7890", "", "+6281234567890", true),
        ("0300 1234567", "PK", "+923001234567", true),
        ("9123 4567", "SG", "+6591234567", true),
        ("1800 123 4567", "SG", "+6518001234567", true),
        ("+65 1234", "", "+651234", false),
    ];
    for (input, region, e164, valid) in cases {
        let info = analyze(input, region);
        assert_eq!((info.e164.as_str(), info.valid), (e164, valid), "{input}");
    }
}

/// Prefixes that phone.dat 2312 (December 2023) lacks and libphonenumber 9.0.43 has: the newer
/// source fills them (data/cn_location_report.txt lists every one).
#[test]
fn merged_location_data_has_newer_prefixes() {
    let data = LocationData::embedded();
    assert_eq!(
        &**data.version(),
        "phone.dat-2312+libphonenumber-9.0.43",
        "data_version names both sources"
    );
    for (number, province, city) in [
        ("17747531234", "内蒙古", "通辽"),
        ("17747641234", "内蒙古", "赤峰"),
        ("18546431234", "黑龙江", "佳木斯"),
        ("14772701234", "四川", "成都"),
    ] {
        let loc = data
            .by_mobile_prefix(number)
            .unwrap_or_else(|| panic!("{number}"));
        assert_eq!((&*loc.province, &*loc.city), (province, city), "{number}");
    }
    // Where the two disagree, phone.dat is kept: 0937 嘉峪关 is not read as 酒泉.
    let report = include_str!("../../data/cn_location_report.txt");
    assert!(report.contains("甘肃 嘉峪关\t甘肃省酒泉市"));
}

/// phonecheck's segment table against libphonenumber's Chinese carrier prefixes: they agree on
/// every basic segment both know; the differences are the listed ones.
#[test]
fn segment_carriers_agree_with_libphonenumber() {
    let mut differ = Vec::new();
    for (prefix, &name) in plan().carriers.iter() {
        let Some(nsn) = prefix.strip_prefix("86") else {
            continue;
        };
        let number = format!("{nsn:0<11}");
        let ours = segments::lookup(&number).map(|s| s.carrier());
        let ours = ours.map(|c| c.host_network.unwrap_or(c.name));
        if ours != Some(name) {
            differ.push(nsn);
        }
    }
    differ.sort_unstable();
    // 161: China Broadnet's segment in libphonenumber, not allocated in the table (README).
    assert_eq!(differ, ["161"]);
}

/// Inputs of every type phonecheck reports: a template and random digits.
fn any_number() -> impl Strategy<Value = (String, String)> {
    let templates: &[(&str, usize, &str)] = &[
        ("138", 8, "CN"),     // mobile
        ("145", 8, "CN"),     // data card
        ("1440", 9, "CN"),    // IoT
        ("17400", 6, "CN"),   // satellite
        ("0755", 8, "CN"),    // fixed line
        ("0931", 7, "CN"),    // fixed line, seven digits
        ("800", 7, "CN"),     // toll free
        ("400", 7, "CN"),     // shared cost
        ("168", 5, "CN"),     // premium rate
        ("955", 2, "CN"),     // service
        ("10690", 8, "CN"),   // SMS port
        ("+62812", 8, "ID"),  // mobile
        ("021", 8, "ID"),     // fixed line
        ("+62809", 7, "ID"),  // premium rate
        ("+659", 7, "SG"),    // mobile
        ("6", 7, "SG"),       // fixed line
        ("+653", 7, "SG"),    // VoIP
        ("+651800", 7, "SG"), // toll free
        ("03", 9, "PK"),      // mobile
        ("042", 8, "PK"),     // fixed line
        ("+92900", 5, "PK"),  // premium rate
        ("+92122", 6, "PK"),  // personal number
    ];
    (0..templates.len(), proptest::collection::vec(0u8..10, 10)).prop_map(move |(i, digits)| {
        let (prefix, len, region) = templates[i];
        let tail: String = digits[..len].iter().map(|d| char::from(b'0' + d)).collect();
        (format!("{prefix}{tail}"), region.to_owned())
    })
}

proptest! {
    /// E.164 written out and read back is the same number, of the same type and validity.
    #[test]
    fn e164_round_trips((input, region) in any_number()) {
        let a = Analyzer::default();
        let first = a.analyze(&input, &region).unwrap();
        prop_assume!(!first.e164.is_empty());
        prop_assert_eq!(
            &first.e164,
            &format!("+{}{}", calling_code(&first.region_code), first.national_number)
        );
        let again = a.analyze(&first.e164, "").unwrap();
        prop_assert_eq!(&again.e164, &first.e164);
        prop_assert_eq!(&again.national_number, &first.national_number);
        prop_assert_eq!(again.number_type, first.number_type, "{}", input);
        prop_assert_eq!(again.valid, first.valid, "{}", input);
    }
}

fn calling_code(region: &str) -> u16 {
    plan().region(region).map_or(0, |r| r.country_code)
}
