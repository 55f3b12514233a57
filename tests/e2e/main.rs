//! Integration tests against a real control plane (see `testkit::control_plane::shared`).

mod badinput;
mod bootstrap;
mod chart;
mod cluster;
mod faults;
mod grant_code;
mod leaks;
mod lifecycle;
mod logs;
mod refresh;
mod revoke;
mod sharding;
mod smoke;
mod support;
mod templates;
