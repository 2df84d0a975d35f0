//! The group compiler: scheduled fusion groups → kernel IR. Today: the index algebra of its
//! movement ops ([`index`]).

pub mod index;
