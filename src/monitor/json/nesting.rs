//! The open containers of a JSON text: the one nesting stack the validator
//! and the stream scanner both keep.

use crate::monitor::message::Refusal;

/// Deepest nesting a [`Nesting`] can hold: one bit per level in a `u128`,
/// the outermost object included (as [`crate::monitor::limits::MAX_DEPTH_LIMIT`]).
pub const MAX_DEPTH: usize = 127;

/// The open objects and arrays, innermost last, as a bit stack: bit `d`
/// is set when level `d + 1` is an object, clear when it is an array. It
/// refuses to open a level past its limit.
#[derive(Debug, Clone, Copy)]
pub struct Nesting {
    objects: u128,
    depth: usize,
    max_depth: usize,
}

/// Opening a container would nest past the limit, which it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep(pub usize);

impl From<TooDeep> for Refusal {
    fn from(TooDeep(max): TooDeep) -> Refusal {
        Refusal::MalformedJson(format!("nested deeper than {max} levels"))
    }
}

impl Nesting {
    /// Nothing open; at most `max_depth` levels (at most [`MAX_DEPTH`]).
    #[inline]
    pub fn new(max_depth: usize) -> Nesting {
        Nesting { objects: 0, depth: 0, max_depth: max_depth.min(MAX_DEPTH) }
    }

    /// How many containers are open.
    #[inline]
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether the innermost open container is an object (false when
    /// none is open).
    #[inline]
    pub fn in_object(&self) -> bool {
        self.depth > 0 && self.objects >> (self.depth - 1) & 1 == 1
    }

    /// Opens an object (`object`) or an array inside the innermost one.
    #[inline]
    pub fn open(&mut self, object: bool) -> Result<(), TooDeep> {
        if self.depth >= self.max_depth {
            return Err(TooDeep(self.max_depth));
        }
        self.objects = self.objects & !(1 << self.depth) | (u128::from(object) << self.depth);
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost container (one must be open): `None` when that
    /// was the outermost, else whether the container now innermost is an
    /// object.
    #[inline]
    pub fn close(&mut self) -> Option<bool> {
        self.depth -= 1;
        match self.depth {
            0 => None,
            d => Some(self.objects >> (d - 1) & 1 == 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn closes_back_to_the_container_it_opened() {
        let _leaks = FdLeakCheck::new();
        let mut n = Nesting::new(8);
        assert!(!n.in_object());
        n.open(true).unwrap();
        n.open(false).unwrap();
        n.open(true).unwrap();
        assert_eq!((n.depth(), n.in_object()), (3, true));
        assert_eq!(n.close(), Some(false));
        assert_eq!(n.close(), Some(true));
        assert_eq!(n.close(), None);
        assert_eq!(n.depth(), 0);
    }

    #[test]
    fn refuses_a_level_past_the_limit() {
        let _leaks = FdLeakCheck::new();
        let mut n = Nesting::new(2);
        n.open(true).unwrap();
        n.open(false).unwrap();
        assert_eq!(n.open(true), Err(TooDeep(2)));
        assert_eq!(n.depth(), 2, "a refused level is not opened");
        // The bit stack holds MAX_DEPTH levels whatever is asked.
        let mut deep = Nesting::new(usize::MAX);
        for level in 0..MAX_DEPTH {
            deep.open(level % 2 == 0).unwrap();
        }
        assert_eq!(deep.open(true), Err(TooDeep(MAX_DEPTH)));
        assert!(deep.in_object());
        assert_eq!(deep.close(), Some(false));
    }
}
