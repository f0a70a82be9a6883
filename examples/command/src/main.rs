//! What a newcomer builds first: `cargo new` makes a binary.

fn main() {
    println!("hello from a command");
}
