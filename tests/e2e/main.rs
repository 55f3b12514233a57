//! Integration tests against a real control plane (see `testkit::control_plane::shared`).

mod badinput;
mod bootstrap;
mod chart;
mod cluster;
mod faults;
mod leaks;
mod lifecycle;
mod refresh;
mod smoke;
mod support;
mod templates;
