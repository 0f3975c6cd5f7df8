// A small phonecheck client in Node.js: one lookup, a streamed bulk check with flow control, and
// a rich error. The contract is loaded from ../../proto at run time with @grpc/proto-loader.
//
//   npm install && node client.js 127.0.0.1:50051 3000
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = path.resolve(__dirname, '..', '..');
const definition = protoLoader.loadSync(
  ['phonecheck/v1/phone_check_service.proto'],
  {
    includeDirs: [path.join(root, 'proto'), path.join(root, 'third_party', 'googleapis')],
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: true,
    oneofs: true,
  },
);
const loaded = grpc.loadPackageDefinition(definition);
const { PhoneCheckService } = loaded.phonecheck.v1;
const protobuf = require('protobufjs');

function lookup(client) {
  return new Promise((resolve, reject) => {
    client.LookupNumber(
      { number: '+86 138-0013-8000', checks: ['CHECK_LINE_STATUS'] },
      { deadline: Date.now() + 10_000 },
      (error, response) => {
        if (error) return reject(error);
        const { info, line_status: lineStatus } = response.report;
        console.log(`lookup: ${info.e164} ${info.carrier.name} ${info.location.province}${info.location.city} ${lineStatus.status}`);
        resolve(response);
      },
    );
  });
}

// Streams `count` numbers. Writes wait for 'drain' when the stream's buffer is full, so the
// client sends only as fast as the server reads (HTTP/2 flow control end to end).
function bulk(client, count) {
  return new Promise((resolve, reject) => {
    const call = client.CheckNumbers({ deadline: Date.now() + 300_000 });
    const seen = new Set();
    let summary = null;
    call.on('data', (message) => {
      if (message.result) seen.add(message.result.request_id);
      if (message.summary) summary = message.summary;
    });
    call.on('error', reject);
    call.on('end', () => {
      console.log(`bulk: ${seen.size} answered, ${summary.reports} reports, ${summary.errors} errors, ${summary.billable_calls} billable`);
      resolve({ seen, summary });
    });
    let i = 0;
    const write = () => {
      while (i < count) {
        const item = {
          request_id: String(i),
          number: `139${String(i).padStart(8, '0')}`,
          checks: ['CHECK_LINE_STATUS'],
        };
        i += 1;
        if (!call.write(item)) {
          call.once('drain', write);
          return;
        }
      }
      call.end();
    };
    write();
  });
}

// A number that is not a number: INVALID_ARGUMENT with a google.rpc.BadRequest detail, read from
// the grpc-status-details-bin trailer.
function richError(client) {
  return new Promise((resolve, reject) => {
    client.LookupNumber({ number: 'call me' }, { deadline: Date.now() + 10_000 }, (error) => {
      if (!error) return reject(new Error('expected INVALID_ARGUMENT'));
      const [details] = error.metadata.get('grpc-status-details-bin');
      const status = decodeStatus(details);
      const violation = status.badRequest.field_violations[0];
      console.log(`error: ${grpc.status[error.code]} on field ${violation.field}: ${violation.description}`);
      resolve({ code: error.code, field: violation.field });
    });
  });
}

// google.rpc.Status and BadRequest, decoded with the same proto files.
function decodeStatus(bytes) {
  const pbRoot = new protobuf.Root();
  pbRoot.resolvePath = (_origin, target) => {
    // google/rpc from the repository; google/protobuf/* are protobufjs' own.
    const candidate = path.join(root, 'third_party', 'googleapis', target);
    return fs.existsSync(candidate) ? candidate : target;
  };
  pbRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  const status = pbRoot.lookupType('google.rpc.Status').decode(bytes);
  const badRequestType = pbRoot.lookupType('google.rpc.BadRequest');
  const detail = status.details.find((d) => d.type_url.endsWith('/google.rpc.BadRequest'));
  return { status, badRequest: badRequestType.decode(detail.value) };
}

async function main() {
  const [address = '127.0.0.1:50051', countArg = '3000'] = process.argv.slice(2);
  const count = Number(countArg);
  const client = new PhoneCheckService(address, grpc.credentials.createInsecure());
  await lookup(client);
  const { seen, summary } = await bulk(client, count);
  const { code, field } = await richError(client);
  client.close();
  const ok = seen.size === count && Number(summary.items_received) === count
    && code === grpc.status.INVALID_ARGUMENT && field === 'number';
  process.exit(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
