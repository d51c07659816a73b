//! [`Fabric`] over a real [`crate::Client`]: the hub's feed is one client
//! subscription, recovery uses the client's raw history queries.
