// A foreign client of medcompute: Node.js with @grpc/grpc-js and @grpc/proto-loader,
// loading the .proto files as they are (no generated code).
//
//   node tests/foreign/process.js HOST:PORT INPUT.f32 ROWS COLS EXPECTED.f32
//
// Sends INPUT (a raw little-endian float32 ROWS x COLS image) to ProcessingService.Process
// with a Gaussian of sigma 1 voxel, reads the result stream, and compares it with EXPECTED
// (same layout). Prints one JSON line (job id, backend, shape, largest difference) and
// exits 0 when every voxel is within 1e-4, 1 when not, 2 on a failed call.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, inputPath, rows, cols, expectedPath] = process.argv.slice(2);
const protoRoot = path.join(__dirname, "..", "..", "proto");
const definition = protoLoader.loadSync("medcompute/v1/processing.proto", {
  includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).medcompute.v1;
const client = new v1.ProcessingService(address, grpc.credentials.createInsecure());

const input = fs.readFileSync(inputPath);
const call = client.Process();
let header = null;
const pieces = [];
call.on("data", (response) => {
  if (response.msg === "header") header = response.header;
  else pieces.push(response.chunk.data);
});
call.on("error", (err) => {
  console.log(JSON.stringify({ error: grpc.status[err.code], details: err.details }));
  process.exit(2);
});
call.on("end", () => {
  const got = Buffer.concat(pieces);
  const expected = fs.readFileSync(expectedPath);
  let worst = 0;
  for (let i = 0; i < expected.length / 4; i++) {
    worst = Math.max(worst, Math.abs(got.readFloatLE(4 * i) - expected.readFloatLE(4 * i)));
  }
  const same = got.length === expected.length && worst <= 1e-4;
  console.log(JSON.stringify({
    job_id: header.job_id, backend: header.backend, shape: header.output.shape.map(Number),
    dtype: header.output.dtype, bytes: got.length, max_abs_error: worst, match: same,
  }));
  process.exit(same ? 0 : 1);
});
call.write({ header: {
  pipeline: [{ gaussian: { sigma: [1.0] } }],
  input: { inline: { encoding: "ENCODING_RAW", shape: [rows, cols],
                     dtype: "DATA_TYPE_FLOAT32", size: input.length } },
  output_dtype: "DATA_TYPE_FLOAT32",
} });
call.write({ chunk: { data: input } });   // no operand: the input image
call.end();
