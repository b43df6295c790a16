//! What a run prints and writes: aligned tables on stdout, and one JSON
//! document with every figure, the machine, the versions and the targets.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

/// A plain-text table, columns padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with a title and column headings.
    pub fn new(title: &str, header: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row, one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as Markdown-style text, preceded by its title.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        let mut out = format!("\n{}\n", self.title);
        out.push_str(&line(&self.header));
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// A target of the issue, checked against this run's own figures.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What the target is, e.g. the scenario and figure.
    pub name: String,
    /// What was divided by what, in words.
    pub measured: String,
    /// The ratio measured in this run.
    pub ratio: f64,
    /// The largest ratio that meets the target.
    pub limit: f64,
    /// Whether `ratio` is a number no greater than `limit`.
    pub met: bool,
}

impl Target {
    /// A target met when `ratio` is at most `limit` (never when not a number).
    pub fn ratio(name: &str, measured: String, ratio: f64, limit: f64) -> Self {
        Self {
            name: name.to_owned(),
            measured,
            ratio,
            limit,
            met: ratio.is_finite() && ratio <= limit,
        }
    }
}

/// Everything a run found, scenario by scenario.
#[derive(Debug, Default)]
pub struct Report {
    /// Every table printed, in order.
    pub tables: Vec<Table>,
    /// The JSON results by scenario, written under `results`.
    pub sections: Map<String, Value>,
    /// The targets checked, written under `targets`.
    pub targets: Vec<Target>,
}

impl Report {
    /// Prints a table and keeps it.
    pub fn table(&mut self, table: Table) {
        print!("{}", table.render());
        self.tables.push(table);
    }

    /// Sets the JSON results of section `name` (`null` if `value` does not
    /// serialise).
    pub fn section(&mut self, name: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.sections.insert(name.to_owned(), value);
    }

    /// Records a target's outcome.
    pub fn target(&mut self, target: Target) {
        self.targets.push(target);
    }

    /// Every target as a table, one row each.
    pub fn targets_table(&self) -> Table {
        let mut t = Table::new("Targets", &["target", "measured", "ratio", "limit", "met"]);
        for target in &self.targets {
            t.row(vec![
                target.name.clone(),
                target.measured.clone(),
                format!("{:.2}", target.ratio),
                format!("{:.2}", target.limit),
                if target.met { "yes" } else { "no" }.to_owned(),
            ]);
        }
        t
    }

    /// Writes the JSON document, creating its directory.
    pub fn write_json(&self, path: &Path, head: Value) -> anyhow::Result<()> {
        let mut doc = match head {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        doc.insert("results".into(), Value::Object(self.sections.clone()));
        doc.insert("targets".into(), serde_json::to_value(&self.targets)?);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(doc))?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column() {
        let mut t = Table::new("T", &["a", "bb"]);
        t.row(vec!["long cell".into(), "x".into()]);
        let text = t.render();
        assert!(text.contains("| a         | bb |"), "{text}");
        assert!(text.contains("| long cell | x  |"), "{text}");
        assert!(text.contains("|-----------|----|"), "{text}");
    }

    #[test]
    fn a_target_is_met_at_its_limit_and_not_when_unmeasured() {
        assert!(Target::ratio("t", String::new(), 1.3, 1.3).met);
        assert!(!Target::ratio("t", String::new(), 1.31, 1.3).met);
        assert!(!Target::ratio("t", String::new(), f64::NAN, 1.3).met);
    }
}
