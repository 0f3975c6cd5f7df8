//! caih decoding and number formats.
use super::*;

/// The vendor page's own example (seeds/001), inside the decided envelope.
const SEED_RUNNING: &str = r#"{"code":"0000","msg":"成功","seqNo":"1","charge":false,"data":{"state":"1","desc":"成功","items":[{"batchUniqueId":"u910043b9cbb24338291d27f3306c06c","batchStatus":"查询中","phone":"15001090000","status":"查询中","mobileHousekeeperName":"--","mobileHousekeeperTimes":"--","mobileHousekeeperShowName":"--","securityGuardName":"--","securityGuardTimes":"--","securityGuardShowName":"--","telephoneBondName":"--","telephoneBondTimes":"--","telephoneBondShowName":"--","mobileGuardName":"--","mobileGuardTimes":"--","mobileGuardShowName":"--","numberLinkName":"--","numberLinkTimes":"--","numberLinkShowName":"--","otherName":"--","otherTimes":"--","otherShowName":"--","date":"2022-07-07","createTime":"2022-07-07 11:00:59"},{"batchUniqueId":"u910043b9cbb24338291d27f3306c06c","batchStatus":"查询中","phone":"15001090001","status":"查询中","mobileHousekeeperName":"--","mobileHousekeeperTimes":"--","mobileHousekeeperShowName":"--","securityGuardName":"--","securityGuardTimes":"--","securityGuardShowName":"--","telephoneBondName":"--","telephoneBondTimes":"--","telephoneBondShowName":"--","mobileGuardName":"--","mobileGuardTimes":"--","mobileGuardShowName":"--","numberLinkName":"--","numberLinkTimes":"--","numberLinkShowName":"--","otherName":"--","otherTimes":"--","otherShowName":"--","date":"2022-07-07","createTime":"2022-07-07 11:00:59"}]}}"#;

#[test]
fn the_seed_example_decodes_as_running() {
    let (items, charge) = decode_search(SEED_RUNNING.as_bytes()).unwrap();
    assert!(!charge);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].phone, "15001090000");
    assert!(items.iter().all(Item::running));
    assert!(items[0].labels().labels.is_empty());
}

#[test]
fn the_seed_failure_is_a_free_failed_query() {
    let body = r#"{"code":"0000","msg":"成功","charge":false,"data":{"state":"0","desc":"失败"}}"#;
    let err = decode_search(body.as_bytes()).unwrap_err();
    assert!(!err.billable() && err.retryable());
}

#[test]
fn labels_are_read_per_source() {
    let body = r#"{"code":"0000","charge":true,"data":{"state":"1","desc":"成功","items":[{"phone":"13800138000","status":"已完成","securityGuardName":"骚扰电话","securityGuardTimes":"120","securityGuardShowName":"--","numberLinkName":"快递送餐","numberLinkTimes":"--","numberLinkShowName":"顺丰速运","otherName":"--","otherTimes":"--","otherShowName":"--"}]}}"#;
    let (items, charge) = decode_search(body.as_bytes()).unwrap();
    assert!(charge && !items[0].running());
    let labels = items[0].labels().labels;
    assert_eq!(labels.len(), 2);
    assert_eq!(
        (labels[0].source, labels[0].label.as_str(), labels[0].count),
        (LabelSource::Qihoo360, "骚扰电话", 120)
    );
    assert_eq!(
        (
            labels[1].source,
            labels[1].display_name.as_str(),
            labels[1].count
        ),
        (LabelSource::Sogou, "顺丰速运", 0)
    );
}

#[test]
fn envelope_codes_are_classified() {
    let err = decode_search(br#"{"code":"1002","msg":"sign error"}"#).unwrap_err();
    assert_eq!(err.reason(), ErrorReason::AuthFailed);
    assert_eq!(classify_code("2001").reason, ErrorReason::QuotaExhausted);
    assert!(classify_code("9999").retryable);
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"code":"0000"}"#,
        br#"{"code":"0000","data":{"state":"1","items":[{"nophone":1}]}}"#,
    ] {
        assert_eq!(
            decode_search(body).unwrap_err().reason(),
            ErrorReason::BadResponse
        );
    }
}

#[test]
fn accepted_number_formats() {
    let a = crate::number::Analyzer::default();
    let tel = |s: &str| caih_tel(&a.analyze(s, "").unwrap());
    assert_eq!(tel("13800138000").as_deref(), Some("13800138000"));
    assert_eq!(tel("010-64012345").as_deref(), Some("01064012345"));
    assert_eq!(tel("95588").as_deref(), Some("95588"));
    assert_eq!(tel("0571-96225").as_deref(), Some("057196225"));
    assert_eq!(tel("400-810-8888").as_deref(), Some("4008108888"));
    assert_eq!(tel("10109999").as_deref(), Some("10109999"));
    assert_eq!(tel("116114").as_deref(), Some("116114"));
    assert_eq!(tel("96225"), None, "96 numbers need their area code");
    assert_eq!(tel("12315"), None);
    assert_eq!(tel("110"), None);
    assert_eq!(tel("+6281234567890"), None);
}
