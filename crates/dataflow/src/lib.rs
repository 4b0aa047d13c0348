//! Dataflows: the expression language and the transform engine (enrich → filter → map).
