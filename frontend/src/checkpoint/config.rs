//! Typed reads of `config.json` fields, with errors that name the field.

use super::CheckpointError;
use serde_json::Value;

pub struct Config<'a> {
    pub json: &'a Value,
    arch: &'a str,
}

impl<'a> Config<'a> {
    pub fn new(json: &'a Value, arch: &'a str) -> Self {
        Config { json, arch }
    }

    fn missing(&self, key: &str) -> CheckpointError {
        CheckpointError::Config(format!(
            "missing field \"{key}\" (needed for {})",
            self.arch
        ))
    }

    fn wrong(&self, key: &str, what: &str) -> CheckpointError {
        CheckpointError::Config(format!(
            "field \"{key}\" should be {what}, found {}",
            self.json[key]
        ))
    }

    fn present(&self, key: &str) -> bool {
        !self.json[key].is_null()
    }

    /// A required positive integer.
    pub fn usize(&self, key: &str) -> Result<usize, CheckpointError> {
        if !self.present(key) {
            return Err(self.missing(key));
        }
        match self.json[key].as_u64() {
            Some(n) if n > 0 && n < (1 << 40) => Ok(n as usize),
            _ => Err(self.wrong(key, "a positive integer")),
        }
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, CheckpointError> {
        if self.present(key) {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, CheckpointError> {
        if !self.present(key) {
            return Ok(default);
        }
        self.json[key]
            .as_f64()
            .ok_or_else(|| self.wrong(key, "a number"))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, CheckpointError> {
        if !self.present(key) {
            return Ok(default);
        }
        self.json[key]
            .as_bool()
            .ok_or_else(|| self.wrong(key, "true or false"))
    }

    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, CheckpointError> {
        if !self.present(key) {
            return Ok(default);
        }
        self.json[key]
            .as_str()
            .ok_or_else(|| self.wrong(key, "a string"))
    }

    /// `a` divides evenly by `b` (heads into hidden size and the like).
    pub fn divide(&self, a: (&str, usize), b: (&str, usize)) -> Result<usize, CheckpointError> {
        if !a.1.is_multiple_of(b.1) {
            return Err(CheckpointError::Config(format!(
                "\"{}\" ({}) is not a multiple of \"{}\" ({})",
                a.0, a.1, b.0, b.1
            )));
        }
        Ok(a.1 / b.1)
    }
}
