//! Column definitions (`meta.k8s.io/v1 TableColumnDefinition`) and the descriptions the
//! printers share.

use serde_json::{json, Value};

/// Description of `metadata.name`, as the API server's swagger docs give it.
pub(crate) const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// Description of `metadata.creationTimestamp`, as the API server's swagger docs give it.
pub(crate) const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

pub(crate) const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

/// One column of a server-side table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header as the API server spells it (`Name`, `Nominated Node`); kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: &'static str,
    /// `name` for the column holding the object name, empty otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// Returns a default-priority column without a format.
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Column { name, kind, format: "", description, priority: 0 }
    }

    /// Returns the same column shown only with `-o wide`.
    pub const fn wide(self) -> Self {
        Column { priority: 1, ..self }
    }

    /// Returns the `TableColumnDefinition` JSON.
    pub fn to_json(&self) -> Value {
        definition_json(self.name, self.kind, self.format, self.description, self.priority)
    }
}

/// Builds a `TableColumnDefinition`; every field is always present on the wire.
pub(crate) fn definition_json(
    name: &str,
    kind: &str,
    format: &str,
    description: &str,
    priority: i32,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// The `Name` column every printer starts with.
pub(crate) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
};

/// The `Age` column of the built-in printers.
pub(crate) const AGE: Column = Column::new("Age", "string", CREATION_DESCRIPTION);

/// Returns a string column.
pub(crate) const fn text(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "string", description)
}

/// Returns an integer column.
pub(crate) const fn integer(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "integer", description)
}

/// Returns a boolean column.
pub(crate) const fn boolean(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "boolean", description)
}

/// The wide `Containers` and `Images` columns of workload printers.
pub(crate) const CONTAINERS: Column = text("Containers", CONTAINERS_DESCRIPTION).wide();
pub(crate) const IMAGES: Column = text("Images", IMAGES_DESCRIPTION).wide();
