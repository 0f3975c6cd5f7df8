//! `phonecheck analyze`: the offline analysis of many numbers, without a server, as JSON lines.
//! For list cleaning on one machine, and for `tools/check_number_agreement.py`, which compares the
//! answers with libphonenumber's.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::CliError;
use crate::number::Analyzer;
use crate::pb;

/// Reads one number per line from `input` (`-`: standard input) and prints, per line, the
/// `NumberInfo` in the protobuf JSON mapping, or `{"input": ..., "error": ...}` for a line that is
/// not a number.
pub(super) fn run(input: &Path, region: &str) -> Result<(), CliError> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| CliError::Render(e.to_string()))?;
    let descriptor = pool
        .get_message_by_name("phonecheck.v1.NumberInfo")
        .ok_or_else(|| CliError::Render("descriptor missing".into()))?;
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| CliError::Render(format!("{}: {e}", input.display())))?;
        Box::new(std::io::BufReader::new(file))
    };
    let analyzer = Analyzer::default();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in reader.lines() {
        let line = line.map_err(|e| CliError::Render(e.to_string()))?;
        let json = match analyzer.analyze(&line, region) {
            Ok(info) => to_json(&descriptor, &crate::messages::info_to_proto(&info))?,
            Err(e) => serde_json::json!({ "input": line, "error": e.to_string() }).to_string(),
        };
        writeln!(out, "{json}").map_err(|e| CliError::Render(e.to_string()))?;
    }
    out.flush().map_err(|e| CliError::Render(e.to_string()))
}

fn to_json(descriptor: &MessageDescriptor, info: &pb::NumberInfo) -> Result<String, CliError> {
    let message = DynamicMessage::decode(descriptor.clone(), info.encode_to_vec().as_slice())
        .map_err(|e| CliError::Render(e.to_string()))?;
    serde_json::to_string(&message).map_err(|e| CliError::Render(e.to_string()))
}
