//! Importers into the tensor IR.
