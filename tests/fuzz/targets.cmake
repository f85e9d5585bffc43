# The fuzz targets: <name>_fuzz.cc each, with a seed corpus in corpus/<name>/
# (and saved reproducers in regressions/<name>/). Shared by natsgw's own
# build (tests/fuzz/CMakeLists.txt) and the libFuzzer build
# (tests/fuzz/libfuzzer/CMakeLists.txt).
set(NATSGW_FUZZ_TARGETS
  typed_request    # typed service: wire request -> verify -> handler -> reply
  typed_reply      # typed client: wire reply -> error headers -> verify
  typed_event      # event payloads: subscriber and publisher verification
  wire_headers     # NATS header block -> Headers, trace, IDs; and back out
  trace_context    # traceparent / tracestate parsing
  validation       # subjects, queue groups, headers, message IDs, matching
  service_json     # Services API: config checks, $SRV.PING/INFO/STATS documents
  schema_set       # tools' SchemaSet: binary schemas, JSON <-> FlatBuffers
)

# Sources every target is built from, besides its own.
set(NATSGW_FUZZ_SUPPORT_SOURCES fuzz_support.cc)
