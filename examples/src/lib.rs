//! The parts of the examples that tests drive; the programs themselves are in `src/bin/`.

pub mod cloudevents_consumer;
