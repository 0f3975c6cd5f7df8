//! Carrier by number segment for Chinese mobile numbers: a rule table written from the MIIT
//! allocations (基础运营商, 虚拟运营商 170/171/162/165/167, 上网卡 145/147/149, 物联网, 卫星).
//!
//! Entries are number prefixes of three to five digits; the longest matching prefix wins.

use crate::domain::{Carrier, NetworkType, NumberType};

/// An operator a segment can be allocated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// 中国移动.
    ChinaMobile,
    /// 中国联通.
    ChinaUnicom,
    /// 中国电信.
    ChinaTelecom,
    /// 中国广电.
    ChinaBroadnet,
    /// 工业和信息化部应急通信保障中心 (emergency communications).
    MiitEmergency,
    /// 中国交通通信信息中心 (maritime satellite service).
    ChinaTransportTelecom,
}

impl Operator {
    /// English and local names.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Operator::ChinaMobile => ("China Mobile", "中国移动"),
            Operator::ChinaUnicom => ("China Unicom", "中国联通"),
            Operator::ChinaTelecom => ("China Telecom", "中国电信"),
            Operator::ChinaBroadnet => ("China Broadnet", "中国广电"),
            Operator::MiitEmergency => (
                "MIIT Emergency Communication Support Center",
                "工业和信息化部应急通信保障中心",
            ),
            Operator::ChinaTransportTelecom => (
                "China Transport Telecommunication & Information Center",
                "中国交通通信信息中心",
            ),
        }
    }

    /// The industry's short code of a public network operator (`CMCC`, `CUCC`, `CTCC`, `CBN`),
    /// as vendors' carrier fields and routing rules write it; `None` for the others.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Operator::ChinaMobile => Some("CMCC"),
            Operator::ChinaUnicom => Some("CUCC"),
            Operator::ChinaTelecom => Some("CTCC"),
            Operator::ChinaBroadnet => Some("CBN"),
            Operator::MiitEmergency | Operator::ChinaTransportTelecom => None,
        }
    }

    /// The public network operator of a short code, the inverse of [`Operator::code`].
    pub fn from_code(code: &str) -> Option<Operator> {
        [
            Operator::ChinaMobile,
            Operator::ChinaUnicom,
            Operator::ChinaTelecom,
            Operator::ChinaBroadnet,
        ]
        .into_iter()
        .find(|op| op.code() == Some(code))
    }
}

/// One allocated segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The number prefix, three to five digits.
    pub prefix: &'static str,
    /// The operator it is allocated to (for a virtual segment, the host network).
    pub operator: Operator,
    /// The network type.
    pub network: NetworkType,
    /// How many digits numbers in this segment have.
    pub length: usize,
}

impl Segment {
    /// The number type of numbers in this segment.
    pub fn number_type(&self) -> NumberType {
        match self.network {
            NetworkType::Basic | NetworkType::Virtual => NumberType::Mobile,
            NetworkType::Data => NumberType::DataCard,
            NetworkType::Iot => NumberType::Iot,
            NetworkType::Satellite => NumberType::Satellite,
            NetworkType::Fixed => NumberType::FixedLine,
        }
    }

    /// The carrier as reported. A virtual operator's segment is reported as "virtual operator"
    /// hosted on the basic network, since the MVNO's own brand is not knowable from the segment.
    pub fn carrier(&self) -> Carrier {
        let (name, local_name) = self.operator.names();
        match self.network {
            NetworkType::Virtual => Carrier {
                name: "Virtual operator",
                local_name: "虚拟运营商",
                network_type: NetworkType::Virtual,
                host_network: Some(name),
                may_be_ported: false,
            },
            network => Carrier {
                name,
                local_name,
                network_type: network,
                host_network: None,
                // Portability (携号转网) is nationwide for basic mobile numbers only.
                may_be_ported: network == NetworkType::Basic,
            },
        }
    }
}

const fn seg(prefix: &'static str, operator: Operator, network: NetworkType) -> Segment {
    Segment {
        prefix,
        operator,
        network,
        length: 11,
    }
}

const fn iot13(prefix: &'static str, operator: Operator) -> Segment {
    Segment {
        prefix,
        operator,
        network: NetworkType::Iot,
        length: 13,
    }
}

use NetworkType::{Basic, Data, Iot, Satellite, Virtual};
use Operator::{
    ChinaBroadnet as CB, ChinaMobile as CM, ChinaTelecom as CT, ChinaTransportTelecom,
    ChinaUnicom as CU, MiitEmergency,
};

/// Every allocated mobile, data, IoT and satellite segment, sorted by prefix.
pub const SEGMENTS: &[Segment] = &[
    seg("130", CU, Basic),
    seg("131", CU, Basic),
    seg("132", CU, Basic),
    seg("133", CT, Basic),
    seg("1340", CM, Basic),
    seg("1341", CM, Basic),
    seg("1342", CM, Basic),
    seg("1343", CM, Basic),
    seg("1344", CM, Basic),
    seg("1345", CM, Basic),
    seg("1346", CM, Basic),
    seg("1347", CM, Basic),
    seg("1348", CM, Basic),
    seg("1349", CT, Satellite),
    seg("135", CM, Basic),
    seg("136", CM, Basic),
    seg("137", CM, Basic),
    seg("138", CM, Basic),
    seg("139", CM, Basic),
    iot13("1400", CU),
    iot13("1410", CT),
    iot13("1440", CM),
    seg("145", CU, Data),
    seg("146", CU, Iot),
    seg("147", CM, Data),
    seg("148", CM, Iot),
    seg("149", CT, Data),
    seg("150", CM, Basic),
    seg("151", CM, Basic),
    seg("152", CM, Basic),
    seg("153", CT, Basic),
    seg("155", CU, Basic),
    seg("156", CU, Basic),
    seg("157", CM, Basic),
    seg("158", CM, Basic),
    seg("159", CM, Basic),
    seg("162", CT, Virtual),
    seg("165", CM, Virtual),
    seg("166", CU, Basic),
    seg("167", CU, Virtual),
    seg("1700", CT, Virtual),
    seg("1701", CT, Virtual),
    seg("1702", CT, Virtual),
    seg("1703", CM, Virtual),
    seg("1704", CU, Virtual),
    seg("1705", CM, Virtual),
    seg("1706", CM, Virtual),
    seg("1707", CU, Virtual),
    seg("1708", CU, Virtual),
    seg("1709", CU, Virtual),
    seg("171", CU, Virtual),
    seg("172", CM, Basic),
    seg("173", CT, Basic),
    seg("17400", CT, Satellite),
    seg("17401", CT, Satellite),
    seg("17402", CT, Satellite),
    seg("17403", CT, Satellite),
    seg("17404", CT, Satellite),
    seg("17405", CT, Satellite),
    seg("17406", MiitEmergency, Satellite),
    seg("17407", MiitEmergency, Satellite),
    seg("17408", MiitEmergency, Satellite),
    seg("17409", MiitEmergency, Satellite),
    seg("17410", MiitEmergency, Satellite),
    seg("17411", MiitEmergency, Satellite),
    seg("17412", MiitEmergency, Satellite),
    seg("1749", ChinaTransportTelecom, Satellite),
    seg("175", CU, Basic),
    seg("176", CU, Basic),
    seg("177", CT, Basic),
    seg("178", CM, Basic),
    seg("180", CT, Basic),
    seg("181", CT, Basic),
    seg("182", CM, Basic),
    seg("183", CM, Basic),
    seg("184", CM, Basic),
    seg("185", CU, Basic),
    seg("186", CU, Basic),
    seg("187", CM, Basic),
    seg("188", CM, Basic),
    seg("189", CT, Basic),
    seg("190", CT, Basic),
    seg("191", CT, Basic),
    seg("192", CB, Basic),
    seg("193", CT, Basic),
    seg("195", CM, Basic),
    seg("196", CU, Basic),
    seg("197", CM, Basic),
    seg("198", CM, Basic),
    seg("199", CT, Basic),
];

/// The China Mobile IoT segment `1064` (13 digits), which shares its first digits with 106 SMS
/// ports and is told apart from them by length.
pub const CM_IOT_1064: Segment = iot13("1064", CM);

/// Finds the segment of a national number by longest prefix (five, four, then three digits).
pub fn lookup(national_number: &str) -> Option<&'static Segment> {
    (3..=5).rev().find_map(|len| {
        let prefix = national_number.get(..len)?;
        SEGMENTS
            .binary_search_by(|s| s.prefix.cmp(prefix))
            .ok()
            .map(|i| &SEGMENTS[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_codes_go_both_ways() {
        for code in ["CMCC", "CUCC", "CTCC", "CBN"] {
            assert_eq!(
                Operator::from_code(code).and_then(Operator::code),
                Some(code)
            );
        }
        assert_eq!(Operator::from_code("cmcc"), None);
        assert_eq!(Operator::MiitEmergency.code(), None);
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(SEGMENTS.windows(2).all(|w| w[0].prefix < w[1].prefix));
    }

    #[test]
    fn no_prefix_shadows_another() {
        // A shorter entry that prefixes a longer one would make the longer one dead or ambiguous.
        for a in SEGMENTS {
            for b in SEGMENTS {
                if a.prefix != b.prefix {
                    assert!(
                        !b.prefix.starts_with(a.prefix),
                        "{} shadows {}",
                        a.prefix,
                        b.prefix
                    );
                }
            }
        }
    }

    /// Every allocated 11-digit segment, with the operator and network it must resolve to.
    #[test]
    fn every_allocated_segment_resolves() {
        use NetworkType::*;
        let expected: &[(&str, Operator, NetworkType)] = &[
            ("130", CU, Basic),
            ("131", CU, Basic),
            ("132", CU, Basic),
            ("133", CT, Basic),
            ("1340", CM, Basic),
            ("1348", CM, Basic),
            ("1349", CT, Satellite),
            ("135", CM, Basic),
            ("136", CM, Basic),
            ("137", CM, Basic),
            ("138", CM, Basic),
            ("139", CM, Basic),
            ("145", CU, Data),
            ("146", CU, Iot),
            ("147", CM, Data),
            ("148", CM, Iot),
            ("149", CT, Data),
            ("150", CM, Basic),
            ("151", CM, Basic),
            ("152", CM, Basic),
            ("153", CT, Basic),
            ("155", CU, Basic),
            ("156", CU, Basic),
            ("157", CM, Basic),
            ("158", CM, Basic),
            ("159", CM, Basic),
            ("162", CT, Virtual),
            ("165", CM, Virtual),
            ("166", CU, Basic),
            ("167", CU, Virtual),
            ("1700", CT, Virtual),
            ("1701", CT, Virtual),
            ("1702", CT, Virtual),
            ("1703", CM, Virtual),
            ("1704", CU, Virtual),
            ("1705", CM, Virtual),
            ("1706", CM, Virtual),
            ("1707", CU, Virtual),
            ("1708", CU, Virtual),
            ("1709", CU, Virtual),
            ("171", CU, Virtual),
            ("172", CM, Basic),
            ("173", CT, Basic),
            ("17400", CT, Satellite),
            ("17405", CT, Satellite),
            ("17406", MiitEmergency, Satellite),
            ("17412", MiitEmergency, Satellite),
            ("1749", ChinaTransportTelecom, Satellite),
            ("175", CU, Basic),
            ("176", CU, Basic),
            ("177", CT, Basic),
            ("178", CM, Basic),
            ("180", CT, Basic),
            ("181", CT, Basic),
            ("182", CM, Basic),
            ("183", CM, Basic),
            ("184", CM, Basic),
            ("185", CU, Basic),
            ("186", CU, Basic),
            ("187", CM, Basic),
            ("188", CM, Basic),
            ("189", CT, Basic),
            ("190", CT, Basic),
            ("191", CT, Basic),
            ("192", CB, Basic),
            ("193", CT, Basic),
            ("195", CM, Basic),
            ("196", CU, Basic),
            ("197", CM, Basic),
            ("198", CM, Basic),
            ("199", CT, Basic),
        ];
        for &(prefix, operator, network) in expected {
            let number = format!("{prefix:0<11}");
            let segment = lookup(&number).unwrap_or_else(|| panic!("{prefix} unallocated"));
            assert_eq!(
                (segment.operator, segment.network),
                (operator, network),
                "{prefix}"
            );
            assert_eq!(segment.length, 11, "{prefix}");
        }
    }

    #[test]
    fn unallocated_segments_resolve_to_nothing() {
        for prefix in [
            "100", "110", "120", "154", "160", "161", "163", "164", "168", "169", "179", "194",
            "17413", "1742",
        ] {
            let number = format!("{prefix:0<11}");
            assert!(lookup(&number).is_none(), "{prefix}");
        }
    }

    #[test]
    fn thirteen_digit_iot_segments() {
        for (number, operator) in [
            ("1440123456789", CM),
            ("1400123456789", CU),
            ("1410123456789", CT),
        ] {
            let segment = lookup(number).unwrap();
            assert_eq!((segment.operator, segment.length), (operator, 13));
            assert_eq!(segment.number_type(), NumberType::Iot);
        }
    }

    #[test]
    fn carriers_for_reports() {
        let basic = lookup("13800138000").unwrap().carrier();
        assert_eq!((basic.name, basic.may_be_ported), ("China Mobile", true));
        let virt = lookup("17001234567").unwrap().carrier();
        assert_eq!(virt.network_type, NetworkType::Virtual);
        assert_eq!(virt.host_network, Some("China Telecom"));
        assert!(!virt.may_be_ported);
        let sat = lookup("17491234567").unwrap();
        assert_eq!(sat.number_type(), NumberType::Satellite);
        assert!(!sat.carrier().may_be_ported);
    }
}
