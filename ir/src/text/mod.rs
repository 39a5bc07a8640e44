//! The textual form of the IR (printer and parser; print ∘ parse = id).
