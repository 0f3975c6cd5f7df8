//! The console's words, in English and Chinese: the browser's language, switchable by a link
//! that sets a cookie. Texts from the API (errors, vendors' descriptions) are shown as they come.

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The language of a code (`en`, `zh`, `zh-CN`, ...), if it is one of the console's.
    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next().unwrap_or("").trim();
        if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::Zh)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The first of the browser's languages (by weight) that the console has; English else.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',').take(20) {
            let mut pieces = part.split(';');
            let code = pieces.next().unwrap_or("");
            let weight = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(code)
                && best.is_none_or(|(w, _)| weight > w)
            {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The code for `<html lang>` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The text of `key` in this language (the key itself when missing, which a test forbids).
    pub fn t(self, key: &str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::Zh => zh,
            },
            None => "?",
        }
    }

    /// Both languages' texts of `key`, for pages shown before the language is known.
    pub fn both(key: &str) -> &'static str {
        BOTH.iter()
            .find(|(k, _)| *k == key)
            .map_or("Error · 错误", |(_, text)| text)
    }
}

/// Error titles in both languages.
const BOTH: &[(&str, &str)] = &[
    ("error.forbidden", "Refused · 已拒绝"),
    ("error.too_many", "Too many requests · 请求过于频繁"),
    ("error.bad_request", "Not understood · 请求有误"),
    ("error.internal", "Internal error · 内部错误"),
    ("error.not_found", "Not found · 未找到"),
    ("error.conflict", "Not possible now · 当前无法执行"),
    ("error.unauthenticated", "Not signed in · 未登录"),
    (
        "error.unavailable",
        "Unavailable, try again · 暂不可用，请重试",
    ),
];

/// Every text: key, English, Chinese.
const TEXTS: &[(&str, &str, &str)] = &[
    ("error.forbidden", "Refused", "已拒绝"),
    (
        "error.too_many",
        "Too many requests; wait a moment",
        "请求过于频繁，请稍候",
    ),
    ("error.bad_request", "Not understood", "请求有误"),
    ("error.internal", "Internal error", "内部错误"),
    ("error.not_found", "Not found", "未找到"),
    ("error.conflict", "Not possible now", "当前无法执行"),
    ("error.unauthenticated", "Not signed in", "未登录"),
    (
        "error.unavailable",
        "Unavailable; try again",
        "暂不可用，请重试",
    ),
    ("nav.jobs", "Jobs", "任务"),
    ("nav.new", "New job", "新建任务"),
    ("nav.usage", "Usage", "用量"),
    ("nav.lookup", "Look up a number", "查询号码"),
    ("nav.signout", "Sign out", "退出"),
    ("signin.title", "Sign in", "登录"),
    ("signin.key", "API key", "API 密钥"),
    ("signin.submit", "Sign in", "登录"),
    (
        "signin.key_hint",
        "The key your administrator gave you (pck_...). It stays on the server; the browser keeps only a session.",
        "管理员提供的密钥（pck_...）。密钥只保存在服务器上，浏览器只保留会话。",
    ),
    (
        "signin.open_hint",
        "No API keys are configured on this server: leave the key empty.",
        "此服务器未配置 API 密钥：密钥留空即可。",
    ),
    (
        "signin.wrong_key",
        "This API key is not valid.",
        "API 密钥无效。",
    ),
    ("jobs.title", "Jobs", "任务"),
    ("jobs.empty", "No jobs yet.", "暂无任务。"),
    ("jobs.file", "Job", "任务"),
    ("jobs.state", "State", "状态"),
    ("jobs.progress", "Progress", "进度"),
    ("jobs.cost", "Cost so far", "已花费"),
    ("jobs.created", "Created", "创建时间"),
    ("jobs.next", "Older jobs", "更早的任务"),
    ("new.title", "New job", "新建任务"),
    (
        "new.file",
        "File (TXT, CSV, XLSX, XLS)",
        "文件（TXT、CSV、XLSX、XLS）",
    ),
    ("new.label", "Label (optional)", "标签（可选）"),
    ("new.checks", "Checks", "检测项"),
    (
        "new.more",
        "Columns and sheet",
        "号码列、注册时间列与工作表",
    ),
    ("new.column", "Number column", "号码列"),
    (
        "new.column_hint",
        "detected when empty: a header, a letter (B) or a number (2)",
        "留空则自动识别：表头、列字母（B）或列号（2）",
    ),
    ("new.sheet", "Sheet", "工作表"),
    (
        "new.registered_at_column",
        "Registration-time column (reassigned number check)",
        "注册时间列（二次号检测）",
    ),
    (
        "new.registered_at_column_hint",
        "detected when empty: a header (注册时间, registered), a letter or a number",
        "留空则按表头识别（注册时间、registered）；也可填列字母或列号",
    ),
    (
        "new.sheet_hint",
        "every sheet when empty",
        "留空则读取所有工作表",
    ),
    (
        "new.max_cost",
        "Most it may spend (optional)",
        "费用上限（可选）",
    ),
    ("new.max_cost_hint", "e.g. 50.00", "例如 50.00"),
    ("new.upload", "Upload and estimate", "上传并估算"),
    ("new.uploading", "Uploading", "正在上传"),
    ("new.reading", "Reading the file…", "正在读取文件…"),
    ("new.retry", "Upload again", "重新上传"),
    (
        "new.js_needed",
        "Uploading needs JavaScript (the console's own script, nothing from outside).",
        "上传需要启用 JavaScript（仅本控制台自带脚本）。",
    ),
    (
        "upload.broken",
        "The connection was lost during the upload; nothing was created. Upload the file again.",
        "上传时连接中断，未创建任务。请重新上传文件。",
    ),
    ("preview.title", "What was read", "读取结果"),
    ("preview.format", "Format", "格式"),
    ("preview.encoding", "Encoding", "编码"),
    ("preview.column", "Number column", "号码列"),
    (
        "preview.registered_at_column",
        "Registration times",
        "注册时间列",
    ),
    ("preview.sheet", "Sheet", "工作表"),
    ("preview.row", "Row", "行"),
    ("preview.sheets_read", "Sheets read", "已读取工作表数"),
    ("preview.pick_column", "Read the numbers from", "号码所在列"),
    (
        "preview.pick_sheet",
        "Sheet (empty: every sheet)",
        "工作表（留空：全部）",
    ),
    ("preview.reread", "Read again", "重新读取"),
    ("estimate.title", "Estimate", "费用估算"),
    ("estimate.rows", "Rows", "行数"),
    ("estimate.bad_rows", "without a number", "无号码"),
    ("estimate.duplicates", "duplicates", "重复"),
    ("estimate.valid", "valid numbers", "有效号码"),
    ("estimate.invalid", "invalid (free)", "无效（免费）"),
    ("estimate.check", "Check", "检测项"),
    ("estimate.answered", "Answered already", "已有结果"),
    ("estimate.not_covered", "Not covered", "不支持"),
    ("estimate.paid", "Paid", "计费"),
    ("estimate.price", "Price", "单价"),
    ("estimate.cost", "Cost", "费用"),
    ("estimate.total", "At most", "最多"),
    ("estimate.duration", "about", "约"),
    ("estimate.max_cost", "Most it may spend", "费用上限"),
    ("estimate.start", "Start", "开始"),
    ("job.file", "File", "文件"),
    ("job.checks", "Checks", "检测项"),
    ("job.rows", "Rows", "行"),
    ("job.numbers", "Numbers", "号码"),
    ("job.rate", "Rate", "速度"),
    ("job.eta", "Time left", "剩余时间"),
    ("job.cost", "Cost so far", "已花费"),
    ("job.max_cost", "Limit", "上限"),
    ("job.no_limit", "none", "无"),
    ("job.failed", "Numbers failed", "失败号码"),
    ("job.bad_rows", "Rows without a number", "无号码的行"),
    ("job.counts", "Line status", "号码状态"),
    ("job.paused_reason", "Paused", "已暂停"),
    ("job.raise", "Raise the limit to", "将上限提高到"),
    ("job.raise_submit", "Raise and go on", "提高并继续"),
    ("job.cancel", "Cancel", "取消任务"),
    ("job.delete", "Delete", "删除"),
    ("job.downloads", "Downloads", "下载"),
    (
        "job.bad_list",
        "Rows without a readable number",
        "无法读取号码的行",
    ),
    ("download.csv_all", "All rows", "全部行"),
    ("download.xlsx_all", "All rows", "全部行"),
    ("download.report", "Report", "报告"),
    ("state.unspecified", "unknown", "未知"),
    ("state.queued", "queued", "排队中"),
    ("state.running", "running", "运行中"),
    ("state.succeeded", "finished", "已完成"),
    ("state.cancelled", "cancelled", "已取消"),
    ("state.failed", "failed", "失败"),
    ("state.paused", "paused", "已暂停"),
    (
        "state.estimated",
        "estimated, waiting to start",
        "已估算，等待开始",
    ),
    ("status.unspecified", "no line status", "无状态"),
    ("status.active", "active", "实号"),
    ("status.empty", "empty number", "空号"),
    ("status.suspended", "suspended", "停机"),
    ("status.silent", "silent", "沉默号"),
    ("status.risk", "risk", "风险号"),
    ("status.powered_off", "powered off", "关机"),
    ("status.no_record", "no record", "无记录"),
    ("status.invalid", "invalid", "无效号码"),
    ("check.line_status", "Line status", "号码状态"),
    ("check.spam_labels", "Spam labels", "骚扰标记"),
    ("check.risk_profile", "Risk profile", "风险画像"),
    ("check.tenure", "Time on network", "在网时长"),
    ("check.reassigned", "Reassigned number", "二次号"),
    ("check.current_carrier", "Carrier after porting", "携号转网"),
    ("check.account_presence", "Account presence", "账号注册"),
    ("usage.title", "Usage", "用量"),
    ("usage.total", "spent", "共花费"),
    ("usage.calls", "Billable calls", "计费调用"),
    (
        "usage.chart",
        "Spend per day and check, last 30 days (China time)",
        "近 30 天每日各检测项花费（北京时间）",
    ),
    ("usage.day", "Day", "日期"),
    ("usage.check", "Check", "检测项"),
    ("usage.provider", "Provider", "供应商"),
    ("usage.hits", "From cache", "缓存命中"),
    ("usage.cost", "Cost", "费用"),
    ("usage.none", "No usage in these days.", "这些天没有用量。"),
    ("lookup.title", "Look up a number", "查询号码"),
    ("lookup.number", "Phone number", "电话号码"),
    ("lookup.submit", "Look up", "查询"),
    ("lookup.e164", "Number", "号码"),
    ("lookup.valid", "Valid", "有效"),
    ("lookup.type", "Type", "类型"),
    ("lookup.carrier", "Carrier", "运营商"),
    ("lookup.location", "Location", "归属地"),
    ("lookup.line_status", "Line status", "号码状态"),
    ("lookup.provider", "Provider", "供应商"),
    ("lookup.state", "Outcome", "结果"),
    ("lookup.cost", "Cost", "费用"),
    (
        "lookup.sandbox",
        "Sandbox: answers come from simulators, not real vendors",
        "沙箱：结果来自模拟器，而非真实供应商",
    ),
    ("lookup.json", "The whole report (JSON)", "完整报告（JSON）"),
    ("lookup.yes", "yes", "是"),
    ("lookup.no", "no", "否"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_chosen_by_weight_and_cookie_codes() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.5"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr-FR,zh-TW;q=0.5"), Lang::Zh);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_code("zh"), Some(Lang::Zh));
        assert_eq!(Lang::from_code("de"), None);
    }

    #[test]
    fn every_key_used_has_both_texts() {
        let mut seen = std::collections::HashSet::new();
        for (key, en, zh) in TEXTS {
            assert!(seen.insert(*key), "{key} twice");
            assert!(!en.is_empty() && !zh.is_empty(), "{key}");
        }
        // Every key the templates and the code ask for is in the table.
        let sources = [
            include_str!("../../templates/console/base.html"),
            include_str!("../../templates/console/signin.html"),
            include_str!("../../templates/console/jobs.html"),
            include_str!("../../templates/console/new.html"),
            include_str!("../../templates/console/preview.html"),
            include_str!("../../templates/console/live.html"),
            include_str!("../../templates/console/job.html"),
            include_str!("../../templates/console/usage.html"),
            include_str!("../../templates/console/lookup.html"),
            include_str!("jobs.rs"),
            include_str!("upload.rs"),
            include_str!("usage.rs"),
            include_str!("pages.rs"),
            include_str!("view.rs"),
        ];
        for source in sources {
            for piece in source.split("t(\"").skip(1) {
                let key = piece.split('"').next().unwrap_or("");
                if key.contains('.') && !key.contains(' ') {
                    assert!(seen.contains(key), "text {key:?} missing");
                }
            }
        }
        for (key, _) in BOTH {
            assert!(seen.contains(key), "{key}");
        }
        for spec in crate::domain::CHECKS {
            assert!(
                seen.contains(format!("check.{}", spec.key).as_str()),
                "{}",
                spec.key
            );
        }
        for state in [
            "queued",
            "running",
            "succeeded",
            "cancelled",
            "failed",
            "paused",
            "estimated",
        ] {
            assert!(seen.contains(format!("state.{state}").as_str()));
        }
    }
}
