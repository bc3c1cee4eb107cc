//! `behave` whose `configure` also requires the option `site`: a "new version" of behave that
//! refuses options the old one takes (issue 20: a replacement must not break the connections
//! that use a module).

include!("../../behave/src/behave.rs");
