//! Cross-crate tests of Mito live under `tests/`, one behaviour per file, named after it.
