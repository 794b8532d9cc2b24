//! End-to-end tests of the whole system (real server processes, real simulators, real webhook
//! receivers) will live here.
