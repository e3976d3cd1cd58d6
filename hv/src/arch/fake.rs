//! Recording, hostile fake of [`super::Arch`] for host tests.
