//! Executes a planned build: the parallel scheduler and the RUN sandbox. The only module that
//! spawns processes.

pub mod sandbox;
