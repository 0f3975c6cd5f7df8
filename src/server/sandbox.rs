//! The sandbox: the vendors' real clients pointed at the in-process simulators.

use std::sync::Arc;

use super::ServeError;
use crate::providers::aliyun::{AliyunConfig, AliyunProvider};
use crate::providers::caih::{CaihConfig, CaihProvider};
use crate::providers::signing::SignatureMethod;
use crate::providers::thinksms::{ThinksmsConfig, ThinksmsProvider};
use crate::providers::tongdun::{TongdunConfig, TongdunProvider};
use crate::providers::yidun::{YidunConfig, YidunProvider};
use crate::providers::{BuildContext, Provider};
use crate::sim;

/// The five vendors' real clients, pointed at the in-process simulators with the sandbox accounts,
/// in the order of [`sim::SANDBOX_PROVIDERS`]: line status is routed over Thinksms, then Aliyun.
pub(super) fn sandbox_providers(
    base_url: &str,
    ctx: &BuildContext,
) -> Result<Vec<Arc<dyn Provider>>, ServeError> {
    let failed = |name: &str| {
        let name = name.to_owned();
        move |message| ServeError::Provider { name, message }
    };
    let key = |k: &str| k.to_owned().into();
    let price = |name: &str| {
        sim::SANDBOX_PRICES
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, price)| price.parse().ok())
    };
    let mut thinksms = ThinksmsConfig::sandbox(base_url.to_owned(), sim::SANDBOX_THINKSMS_HASHCODE);
    thinksms.prices.line_status = price("thinksms");
    let mut aliyun = AliyunConfig::sandbox(
        base_url.to_owned(),
        sim::SANDBOX_ALIYUN_ACCESS_KEY_ID,
        sim::SANDBOX_ALIYUN_AUTH_CODE,
    );
    aliyun.prices.line_status = price("aliyun");
    let mut caih = CaihConfig::sandbox(
        base_url.to_owned(),
        sim::SANDBOX_CAIH_USER_KEY,
        sim::SANDBOX_CAIH_APP_ID,
    );
    caih.prices.spam_labels = price("caih");
    let mut tongdun = TongdunConfig::sandbox(base_url, sim::SANDBOX_TONGDUN_PARTNER_CODE);
    tongdun.prices.account_presence = price("tongdun");
    let mut yidun = YidunConfig::sandbox(
        base_url.to_owned(),
        sim::SANDBOX_YIDUN_SECRET_ID,
        sim::SANDBOX_YIDUN_BUSINESS_ID,
        SignatureMethod::Sm3,
    );
    yidun.prices.risk_profile = price("yidun");
    Ok(vec![
        Arc::new(
            ThinksmsProvider::new(
                "thinksms",
                &thinksms,
                key(sim::SANDBOX_THINKSMS_PRIVATE_KEY),
                ctx,
            )
            .map_err(failed("thinksms"))?,
        ),
        Arc::new(
            AliyunProvider::new(
                "aliyun",
                &aliyun,
                key(sim::SANDBOX_ALIYUN_ACCESS_KEY_SECRET),
                ctx,
            )
            .map_err(failed("aliyun"))?,
        ),
        Arc::new(
            CaihProvider::new("caih", &caih, key(sim::SANDBOX_CAIH_SECRET_KEY), ctx)
                .map_err(failed("caih"))?,
        ),
        Arc::new(
            TongdunProvider::new(
                "tongdun",
                &tongdun,
                key(sim::SANDBOX_TONGDUN_PARTNER_KEY),
                ctx,
            )
            .map_err(failed("tongdun"))?,
        ),
        Arc::new(
            YidunProvider::new("yidun", &yidun, key(sim::SANDBOX_YIDUN_SECRET_KEY), ctx)
                .map_err(failed("yidun"))?,
        ),
    ])
}
