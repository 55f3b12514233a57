//! Integration tests against a real control plane (see `testkit::control_plane::shared`).

mod bootstrap;
mod chart;
mod faults;
mod leaks;
mod lifecycle;
mod smoke;
mod support;
