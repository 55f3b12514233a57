//! Reading secrets for the bootstrap command: from a file, the environment or stdin, never from
//! the command line. Error messages name where a value was looked for, never the value, and not
//! even a file's path, which is sometimes the secret itself pasted in the wrong place.

use std::{
    io::{self, BufRead, IsTerminal, Read},
    path::Path,
};

use secrecy::SecretString;

/// Secrets are short; a larger file is the wrong file.
const MAX_SECRET_BYTES: u64 = 16 * 1024;

/// Where one secret may come from, and how to name it in messages.
pub(super) struct SecretSource<'a> {
    /// "client secret", "grant code".
    pub what: &'static str,
    /// The flag naming a file, and its value.
    pub file_flag: &'static str,
    pub file: Option<&'a Path>,
    pub env: &'static str,
}

/// Stdin, read a line per secret, in the order the secrets are asked for.
pub(super) struct Stdin {
    lines_read: usize,
}

impl Stdin {
    pub fn new() -> Self {
        Self { lines_read: 0 }
    }

    fn read_line(&mut self, what: &str) -> Result<String, String> {
        self.lines_read += 1;
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return read_hidden(&format!("Enter the {what} (input is hidden): "))
                .map_err(|err| format!("cannot read the {what} from the terminal: {err}"));
        }
        let mut line = String::new();
        let read = stdin.lock().take(MAX_SECRET_BYTES).read_line(&mut line);
        match read {
            Ok(0) => Err(format!("stdin ended before line {} (the {what})", self.lines_read)),
            Ok(_) => Ok(line),
            Err(err) => Err(format!("cannot read the {what} from stdin: {}", err.kind())),
        }
    }
}

/// Reads one secret: the file when its flag is given ("-" is stdin), else the environment
/// variable, else the next line of stdin.
pub(super) fn read_secret(source: &SecretSource<'_>, stdin: &mut Stdin) -> Result<SecretString, String> {
    let SecretSource { what, file_flag, file, env } = *source;
    let hint = format!("pass it with {file_flag} PATH, the {env} environment variable, or on stdin");
    let (raw, origin) = match file {
        Some(path) if path == Path::new("-") => (stdin.read_line(what)?, "stdin".to_string()),
        Some(path) => (
            read_file(path).map_err(|err| format!("cannot read the file given with {file_flag}: {err}"))?,
            file_flag.to_string(),
        ),
        None => match std::env::var(env) {
            Ok(value) => (value, env.to_string()),
            Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{env} is not valid UTF-8; {hint}")),
            Err(std::env::VarError::NotPresent) => {
                (stdin.read_line(what).map_err(|err| format!("no {what}: {err}; {hint}"))?, "stdin".to_string())
            }
        },
    };
    let value = raw.trim();
    if value.is_empty() {
        return Err(format!("the {what} from {origin} is empty; {hint}"));
    }
    if value.contains(char::is_whitespace) || value.chars().any(char::is_control) {
        return Err(format!(
            "the {what} from {origin} contains spaces or control characters, which Zoho's never do; {hint}, \
             alone on its line"
        ));
    }
    Ok(SecretString::from(value.to_string()))
}

fn read_file(path: &Path) -> io::Result<String> {
    let mut raw = String::new();
    std::fs::File::open(path)?.take(MAX_SECRET_BYTES).read_to_string(&mut raw)?;
    Ok(raw)
}

/// Prompts on stderr and reads a line from the terminal with echo off, so that the secret is
/// not left on the screen or in a terminal recording.
fn read_hidden(prompt: &str) -> io::Result<String> {
    eprint!("{prompt}");
    let echo = EchoOff::new();
    let mut line = String::new();
    let read = io::stdin().lock().take(MAX_SECRET_BYTES).read_line(&mut line);
    if echo.is_some() {
        // The user's Enter was not echoed either.
        eprintln!();
    }
    drop(echo);
    read.map(|_| line)
}

/// Terminal echo switched off on stdin until dropped.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> Option<Self> {
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the struct when it returns 0, and only then is it read.
        let saved = unsafe {
            if libc::tcgetattr(libc::STDIN_FILENO, saved.as_mut_ptr()) != 0 {
                return None;
            }
            saved.assume_init()
        };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios, obtained above, for the stdin descriptor.
        let set = unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) };
        (set == 0).then_some(Self { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_file_is_read_and_trimmed_and_its_path_is_never_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "  SENTINEL-secret  ").unwrap();
        let source = SecretSource {
            what: "client secret",
            file_flag: "--client-secret-file",
            file: Some(file.path()),
            env: "UNUSED_1",
        };
        assert_eq!(read_secret(&source, &mut Stdin::new()).unwrap().expose_secret(), "SENTINEL-secret");

        let missing = Path::new("SENTINEL-pasted-secret");
        let source = SecretSource { file: Some(missing), ..source };
        let err = read_secret(&source, &mut Stdin::new()).unwrap_err();
        assert!(err.contains("--client-secret-file") && !err.contains("SENTINEL"), "{err}");
    }

    #[test]
    fn empty_or_spaced_values_are_refused_without_echoing_them() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "SENTINEL one\ttwo").unwrap();
        let source = SecretSource {
            what: "grant code",
            file_flag: "--grant-code-file",
            file: Some(file.path()),
            env: "UNUSED_2",
        };
        let err = read_secret(&source, &mut Stdin::new()).unwrap_err();
        assert!(err.contains("spaces") && !err.contains("SENTINEL"), "{err}");

        let empty = tempfile::NamedTempFile::new().unwrap();
        let source = SecretSource { file: Some(empty.path()), ..source };
        let err = read_secret(&source, &mut Stdin::new()).unwrap_err();
        assert!(err.contains("is empty") && err.contains("UNUSED_2"), "{err}");
    }
}
