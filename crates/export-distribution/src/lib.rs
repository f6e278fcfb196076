//! Distribution: signed download URLs.
