//! The normaliser and classifier, case by case.

use super::*;
use crate::domain::NetworkType;

fn analyzer() -> Analyzer {
    Analyzer::default()
}

/// (input, default region, E.164, type, valid)
const CASES: &[(&str, &str, &str, NumberType, bool)] = &[
    // Written forms of one mobile.
    (
        "13800138000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "+86 138-0013-8000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "008613800138000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "8613800138000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "+8613800138000",
        "ID",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "１３８００１３８０００",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        " 138 0013 8000 ",
        "cn",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "138.0013.8000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "(+86) 13800138000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "tel:+86-138-0013-8000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    (
        "013800138000",
        "",
        "+8613800138000",
        NumberType::Mobile,
        true,
    ),
    // Fixed lines.
    (
        "(010) 6401-2345",
        "",
        "+861064012345",
        NumberType::FixedLine,
        true,
    ),
    (
        "010-64012345",
        "",
        "+861064012345",
        NumberType::FixedLine,
        true,
    ),
    (
        "+86 10 6401 2345",
        "",
        "+861064012345",
        NumberType::FixedLine,
        true,
    ),
    (
        "0755-86013388",
        "",
        "+8675586013388",
        NumberType::FixedLine,
        true,
    ),
    (
        "+86 755 8601 3388",
        "",
        "+8675586013388",
        NumberType::FixedLine,
        true,
    ),
    (
        "021 6401 2345",
        "",
        "+862164012345",
        NumberType::FixedLine,
        true,
    ),
    // Hangzhou dials eight digits: seven are not a number there.
    (
        "0571-8888888",
        "",
        "+865718888888",
        NumberType::FixedLine,
        false,
    ),
    (
        "0571-88888888",
        "",
        "+8657188888888",
        NumberType::FixedLine,
        true,
    ),
    ("010-1234", "", "+86101234", NumberType::FixedLine, false),
    // Special numbers.
    (
        "400-810-8888",
        "",
        "+864008108888",
        NumberType::SharedCost,
        true,
    ),
    (
        "800-810-8888",
        "",
        "+868008108888",
        NumberType::TollFree,
        true,
    ),
    ("95588", "", "+8695588", NumberType::Service, true),
    ("95105888", "", "+8695105888", NumberType::Service, true),
    ("0571-96225", "", "+8657196225", NumberType::Service, true),
    ("96225", "", "+8696225", NumberType::Service, true),
    ("10109999", "", "+8610109999", NumberType::Service, true),
    ("10086", "", "+8610086", NumberType::Service, true),
    ("12315", "", "+8612315", NumberType::Service, true),
    ("12306", "", "+8612306", NumberType::Service, true),
    ("110", "", "+86110", NumberType::Emergency, true),
    ("119", "", "+86119", NumberType::Emergency, true),
    ("120", "", "+86120", NumberType::Emergency, true),
    ("122", "", "+86122", NumberType::Emergency, true),
    (
        "1069012345678",
        "",
        "+861069012345678",
        NumberType::SmsPort,
        true,
    ),
    ("10690000", "", "+8610690000", NumberType::SmsPort, true),
    ("116114", "", "+86116114", NumberType::Service, true),
    // Data cards, IoT, virtual operators, satellite.
    (
        "14512345678",
        "",
        "+8614512345678",
        NumberType::DataCard,
        true,
    ),
    (
        "14712345678",
        "",
        "+8614712345678",
        NumberType::DataCard,
        true,
    ),
    (
        "1440123456789",
        "",
        "+861440123456789",
        NumberType::Iot,
        true,
    ),
    (
        "1064812345678",
        "",
        "+861064812345678",
        NumberType::Iot,
        true,
    ),
    (
        "17012345678",
        "",
        "+8617012345678",
        NumberType::Mobile,
        true,
    ),
    (
        "17112345678",
        "",
        "+8617112345678",
        NumberType::Mobile,
        true,
    ),
    (
        "16212345678",
        "",
        "+8616212345678",
        NumberType::Mobile,
        true,
    ),
    (
        "17491234567",
        "",
        "+8617491234567",
        NumberType::Satellite,
        true,
    ),
    (
        "17400123456",
        "",
        "+8617400123456",
        NumberType::Satellite,
        true,
    ),
    (
        "19212345678",
        "",
        "+8619212345678",
        NumberType::Mobile,
        true,
    ),
    // Well formed but not assigned.
    (
        "10012345678",
        "",
        "+8610012345678",
        NumberType::Mobile,
        false,
    ),
    (
        "15412345678",
        "",
        "+8615412345678",
        NumberType::Mobile,
        false,
    ),
    (
        "1380013800",
        "",
        "+861380013800",
        NumberType::Unknown,
        false,
    ),
    ("64012345", "", "", NumberType::FixedLine, false),
    // Indonesia, Singapore, Pakistan.
    (
        "+62 812-3456-7890",
        "",
        "+6281234567890",
        NumberType::Mobile,
        true,
    ),
    (
        "0812 3456 7890",
        "ID",
        "+6281234567890",
        NumberType::Mobile,
        true,
    ),
    ("+65 9123 4567", "", "+6591234567", NumberType::Mobile, true),
    (
        "6123 4567",
        "SG",
        "+6561234567",
        NumberType::FixedLine,
        true,
    ),
    (
        "+92 300 1234567",
        "",
        "+923001234567",
        NumberType::Mobile,
        true,
    ),
    (
        "0300-1234567",
        "pk",
        "+923001234567",
        NumberType::Mobile,
        true,
    ),
];

#[test]
fn written_forms() {
    let a = analyzer();
    for &(input, region, e164, number_type, valid) in CASES {
        let info = a
            .analyze(input, region)
            .unwrap_or_else(|e| panic!("{input:?} in {region:?}: {e}"));
        assert_eq!(
            (info.e164.as_str(), info.number_type, info.valid),
            (e164, number_type, valid),
            "{input:?} in {region:?}"
        );
        assert_eq!(info.input, input);
    }
    assert!(CASES.len() >= 40);
}

#[test]
fn garbage_is_an_error_naming_the_field() {
    let a = analyzer();
    let cases: &[(&str, &str, &str)] = &[
        ("", "", "number"),
        ("   ", "", "number"),
        ("hello", "", "number"),
        ("12", "", "number"),
        ("1380013800a", "", "number"),
        ("+", "", "number"),
        ("+86+138", "", "number"),
        ("123456789012345678901", "", "number"),
        ("13800138000", "XX", "default_region"),
        ("13800138000", "CHN", "default_region"),
        ("+999 1234 5678", "", "number"),
        ("DROP TABLE", "", "number"),
        ("1️⃣2️⃣3️⃣", "", "number"),
    ];
    for &(input, region, field) in cases {
        let err = a.analyze(input, region).expect_err(input);
        assert_eq!(err.field(), field, "{input:?}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn beijing_mobile_by_segment_and_prefix() {
    let info = analyzer().analyze("13800138000", "").unwrap();
    assert_eq!(info.region_code, "CN");
    assert_eq!(info.national_number, "13800138000");
    let carrier = info.carrier.unwrap();
    assert_eq!(
        (carrier.name, carrier.local_name),
        ("China Mobile", "中国移动")
    );
    assert_eq!(carrier.network_type, NetworkType::Basic);
    assert!(carrier.may_be_ported);
    let loc = info.location.unwrap();
    assert_eq!(
        (&*loc.province, &*loc.city, &*loc.area_code),
        ("北京", "北京", "010")
    );
    assert!(info.data_version.starts_with("phone.dat-"));
}

#[test]
fn fixed_line_city_by_area_code() {
    let a = analyzer();
    let loc = a.analyze("(010) 6401-2345", "").unwrap().location.unwrap();
    assert_eq!((&*loc.city, &*loc.area_code), ("北京", "010"));
    let loc = a.analyze("0755-86013388", "").unwrap().location.unwrap();
    assert_eq!(
        (&*loc.province, &*loc.city, &*loc.area_code),
        ("广东", "深圳", "0755")
    );
    let loc = a.analyze("+86 24 2345 6789", "").unwrap().location.unwrap();
    assert_eq!((&*loc.city, &*loc.area_code), ("沈阳", "024"));
}

#[test]
fn virtual_operator_reports_its_host() {
    let info = analyzer().analyze("17051234567", "").unwrap();
    let carrier = info.carrier.unwrap();
    assert_eq!(carrier.network_type, NetworkType::Virtual);
    assert_eq!(carrier.host_network, Some("China Mobile"));
    assert!(!carrier.may_be_ported);
}

#[test]
fn foreign_numbers_have_region_and_national_number() {
    let info = analyzer().analyze("+62 812-3456-7890", "").unwrap();
    assert_eq!(
        (info.region_code.as_str(), info.national_number.as_str()),
        ("ID", "81234567890")
    );
    assert_eq!(info.carrier.map(|c| c.name), Some("Telkomsel"));
    assert!(
        info.location.is_none(),
        "a mobile, placed only by a fixed-wireless prefix"
    );
}

#[test]
fn region_parsing() {
    assert_eq!(parse_region("").unwrap(), country::Id::CN);
    assert_eq!(parse_region(" sg ").unwrap(), country::Id::SG);
    assert!(parse_region("ZZ").is_err());
    assert!(parse_region("C").is_err());
}
