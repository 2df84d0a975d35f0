//! Typed handles into append-only arenas.
//!
//! A [`Handle<T>`] is a 1-based `u32` index wrapped in `NonZeroU32`, so `Option<Handle<T>>` costs
//! no extra space. Handles are only meaningful for the arena that issued them; the verifier checks
//! every handle against its arena before anything else trusts it.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::num::NonZeroU32;

/// A typed index into an [`Arena<T>`].
pub struct Handle<T> {
    index: NonZeroU32,
    marker: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    /// The handle of the `index`-th element (0-based). Returns `None` past `u32::MAX - 1`.
    pub fn from_index(index: usize) -> Option<Self> {
        let raw = u32::try_from(index).ok()?.checked_add(1)?;
        NonZeroU32::new(raw).map(|index| Handle { index, marker: PhantomData })
    }

    /// The 0-based position of the element in its arena.
    pub fn index(self) -> usize {
        (self.index.get() - 1) as usize
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Handle<T> {}
impl<T> PartialEq for Handle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl<T> Eq for Handle<T> {}
impl<T> PartialOrd for Handle<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Handle<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}
impl<T> Hash for Handle<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.index.hash(state)
    }
}
impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.index())
    }
}

/// An append-only vector addressed by [`Handle<T>`].
#[derive(Clone, PartialEq)]
pub struct Arena<T> {
    data: Vec<T>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena { data: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Arena<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Error returned when an arena would exceed `u32::MAX - 1` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("arena is full ({0} elements)")]
pub struct ArenaFull(pub usize);

impl<T> Arena<T> {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `value` and returns its handle.
    pub fn try_append(&mut self, value: T) -> Result<Handle<T>, ArenaFull> {
        let handle = Handle::from_index(self.data.len()).ok_or(ArenaFull(self.data.len()))?;
        self.data.push(value);
        Ok(handle)
    }

    /// Appends `value`. Panics only if the arena already holds 4 billion elements, which no
    /// module of a real model comes near; fallible callers use [`Arena::try_append`].
    pub fn append(&mut self, value: T) -> Handle<T> {
        match self.try_append(value) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// The element behind `handle`, or `None` if the handle is out of range.
    pub fn get(&self, handle: Handle<T>) -> Option<&T> {
        self.data.get(handle.index())
    }

    /// Mutable access to the element behind `handle`.
    pub fn get_mut(&mut self, handle: Handle<T>) -> Option<&mut T> {
        self.data.get_mut(handle.index())
    }

    /// Whether `handle` points into this arena.
    pub fn contains(&self, handle: Handle<T>) -> bool {
        handle.index() < self.data.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the arena is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates `(handle, element)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (Handle<T>, &T)> {
        self.data.iter().enumerate().filter_map(|(i, v)| Handle::from_index(i).map(|h| (h, v)))
    }
}

impl<T> std::ops::Index<Handle<T>> for Arena<T> {
    type Output = T;
    /// Indexing with a foreign handle panics; only verified modules are indexed this way.
    fn index(&self, handle: Handle<T>) -> &T {
        &self.data[handle.index()]
    }
}

impl<T> std::ops::IndexMut<Handle<T>> for Arena<T> {
    fn index_mut(&mut self, handle: Handle<T>) -> &mut T {
        &mut self.data[handle.index()]
    }
}
