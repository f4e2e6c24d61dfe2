//! Benchmarks for maas live in `benches/`; see benches/README.md.
