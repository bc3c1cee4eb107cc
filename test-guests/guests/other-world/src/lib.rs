//! A component of another world: the host refuses it at upload and says what is missing.

wit_bindgen::generate!({ path: "wit", world: "other" });

struct Other;

impl Guest for Other {
    fn transform(input: String) -> String {
        input.to_uppercase()
    }
}

export!(Other);
