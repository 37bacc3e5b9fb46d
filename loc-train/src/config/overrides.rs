//! `--set key.path=value`: any field of the TOML table, before validation.

/// Sets `key.path=value` in `table` (`data.sets.0.weight=2` indexes arrays); the value is
/// parsed as TOML, or taken as a string.
pub(super) fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), String> {
    let (key, raw) = item.split_once('=').ok_or("expected key=value")?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &key.trim().split('.').collect::<Vec<_>>(), value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

fn set_path(node: &mut toml::Value, path: &[&str], value: toml::Value) -> Result<(), String> {
    let (part, rest) = path.split_first().ok_or("empty key")?;
    let child = match node {
        toml::Value::Table(t) if rest.is_empty() => {
            t.insert(part.to_string(), value);
            return Ok(());
        }
        toml::Value::Table(t) => t.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())),
        toml::Value::Array(items) => {
            let len = items.len();
            let index: usize = part.parse().map_err(|_| format!("`{part}`: expected an index into an array"))?;
            let slot = items.get_mut(index).ok_or_else(|| format!("index {index} is past the array's {len} items"))?;
            if rest.is_empty() {
                *slot = value;
                return Ok(());
            }
            slot
        }
        _ => return Err(format!("`{part}`: its parent is neither a table nor an array")),
    };
    set_path(child, rest, value)
}
