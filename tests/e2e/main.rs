//! Integration tests against a real control plane (see `testkit::control_plane::shared`).

mod chart;
mod faults;
mod leaks;
mod lifecycle;
mod smoke;
mod support;
