-- webhook.lua — wrk script for the webhook ingest benchmark (make bench).
--
-- Every request is a new OpenMetadata ChangeEvent (entityCreated on a new
-- databaseService, a unique event id and service name), signed as
-- OpenMetadata signs it: X-OM-Signature: sha256=<Base64(HMAC-SHA256(secret,
-- raw body))>, computed with libcrypto through LuaJIT's FFI.
--
-- Environment: BENCH_SECRET (the webhook secret), BENCH_NONCE (makes the ids
-- of this run unique), BENCH_IDS_OUT (file to write the run_id of every 2xx
-- answer to, one a line; optional). done() prints one line:
--   BENCH requests=N duration_s=S rps=R p50_ms=A p99_ms=B ok2xx=K non2xx=M errors=E
local ffi = require("ffi")
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local secret = os.getenv("BENCH_SECRET") or "bench-secret"
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local md = ffi.new("unsigned char[32]")
local mdlen = ffi.new("unsigned int[1]")
local b64 = ffi.new("unsigned char[64]")

local function sign(body)
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, md, mdlen)
  local n = crypto.EVP_EncodeBlock(b64, md, 32)
  return "sha256=" .. ffi.string(b64, n)
end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  nids = 0
  ok2xx = 0
  non2xx = 0
end

local template = [[{"id":"%s","eventType":"entityCreated","entityType":"databaseService",]] ..
  [["entityId":"%s","entityFullyQualifiedName":"%s","previousVersion":0.1,"currentVersion":0.1,]] ..
  [["userName":"admin","timestamp":%d,"changeDescription":null,"entity":{"id":"%s","name":"%s",]] ..
  [["fullyQualifiedName":"%s","serviceType":"Postgres","connection":{"config":{"type":"Postgres",]] ..
  [["scheme":"postgresql+psycopg2","username":"openmetadata_user","hostPort":"postgres.internal:5432",]] ..
  [["database":"sales","supportsMetadataExtraction":true,"supportsUsageExtraction":true,]] ..
  [["supportsLineageExtraction":true,"supportsProfiler":true,]] ..
  [["schemaFilterPattern":{"includes":[],"excludes":["^information_schema$","^staging_.*"]},]] ..
  [["tableFilterPattern":{"includes":["^fact_","^dim_"],"excludes":[]}}},"owners":[],]] ..
  [["version":0.1,"updatedAt":1764000000000,"updatedBy":"admin","deleted":false}}]]

function request()
  counter = counter + 1
  local eid = string.format("%s-%04x-4000-8000-%012x", nonce, tid, counter)
  local entid = string.format("e%s-%04x-%012x", nonce, tid, counter)
  local fqn = string.format("bench_%s_%d_%d", nonce, tid, counter)
  local body = string.format(template, eid, entid, fqn, 1764000000000 + counter, entid, fqn, fqn)
  return wrk.format("POST", "/api/v1/webhooks/openmetadata", {
    ["Content-Type"] = "application/json",
    ["X-OM-Signature"] = sign(body),
  }, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
    local id = body:match('"run_id"%s*:%s*"([^"]+)"')
    if id then
      nids = nids + 1
      ids[nids] = id
    end
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local ok, non, out = 0, 0, os.getenv("BENCH_IDS_OUT")
  local f = out and io.open(out, "w")
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok2xx")
    non = non + t:get("non2xx")
    if f then
      local tids = t:get("ids")
      for i = 1, t:get("nids") do f:write(tids[i], "\n") end
    end
  end
  if f then f:close() end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_s=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f ok2xx=%d non2xx=%d errors=%d\n",
    summary.requests, secs, ok / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, ok, non,
    e.connect + e.read + e.write + e.timeout))
end
