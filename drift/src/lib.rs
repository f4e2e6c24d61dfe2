//! Streaming drift detectors (ADWIN, Page-Hinkley, HDDM) and table drift reports.
//!
//! Pure and synchronous: no I/O, no async. The gateway feeds it the rows it scores.
//! The detectors arrive with issue #5; this crate holds the seam so the workspace keeps the
//! layout of shared/DESIGN.md.
