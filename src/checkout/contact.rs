//! The buyer's contact: what the checkout form asks for (`CHECKOUT_FIELDS`) and the rules each
//! field must meet. A form with a problem is answered field by field, and the shopper's text is
//! kept for the form shown again; a contact that passes is stored normalised (a phone number as
//! its 11 digits).

use crate::domain::ContactField;
use crate::store::Contact;

/// The contact form as the shopper filled it in, every field as typed (absent: not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactForm {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub note: Option<String>,
}

impl ContactForm {
    /// A field as typed.
    pub fn get(&self, field: ContactField) -> Option<&str> {
        match field {
            ContactField::Name => self.name.as_deref(),
            ContactField::Phone => self.phone.as_deref(),
            ContactField::Address => self.address.as_deref(),
            ContactField::Email => self.email.as_deref(),
            ContactField::Note => self.note.as_deref(),
        }
    }

    /// Whether none of `fields` was sent at all (a bare buy form, not a filled-in contact).
    pub fn is_absent(&self, fields: &[ContactField]) -> bool {
        fields.iter().all(|f| self.get(*f).is_none())
    }
}

/// A field's problem, said to the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub field: ContactField,
    pub message: &'static str,
}

/// Longest value of each field, in characters.
pub const MAX_NAME: usize = 50;
pub const MAX_ADDRESS: usize = 200;
pub const MAX_EMAIL: usize = 254;
pub const MAX_NOTE: usize = 500;

/// Checks `form` against the fields the shop asks for; fields it does not ask for are ignored.
/// Every problem is reported, not only the first.
pub fn check(fields: &[ContactField], form: &ContactForm) -> Result<Contact, Vec<Problem>> {
    let mut contact = Contact::default();
    let mut problems = Vec::new();
    for &field in fields {
        let typed = form.get(field).unwrap_or_default();
        match check_field(field, typed) {
            Ok(value) => {
                let slot = match field {
                    ContactField::Name => &mut contact.name,
                    ContactField::Phone => &mut contact.phone,
                    ContactField::Address => &mut contact.address,
                    ContactField::Email => &mut contact.email,
                    ContactField::Note => &mut contact.note,
                };
                *slot = value;
            }
            Err(message) => problems.push(Problem { field, message }),
        }
    }
    if problems.is_empty() {
        Ok(contact)
    } else {
        Err(problems)
    }
}

/// One field's value, normalised (`None`: an empty optional field), or its problem.
fn check_field(field: ContactField, typed: &str) -> Result<Option<String>, &'static str> {
    // One line for every field but the note; no other control characters anywhere.
    let text = typed.trim();
    let one_line = |text: &str| {
        if text.chars().any(char::is_control) {
            Err("请只填写一行文字 Please write it on one line, as text.")
        } else {
            Ok(())
        }
    };
    match field {
        ContactField::Name => {
            if text.is_empty() {
                return Err("请填写收货人姓名 Please enter your name.");
            }
            one_line(text)?;
            if text.chars().count() > MAX_NAME {
                return Err(
                    "姓名太长（最多 50 个字）The name is too long (50 characters at most).",
                );
            }
            Ok(Some(text.to_owned()))
        }
        ContactField::Phone => {
            if text.is_empty() {
                return Err("请填写手机号码 Please enter your mobile number.");
            }
            mobile_number(text).map(Some).ok_or(
                "请填写 11 位手机号码，如 138 0013 8000 Please enter an 11-digit mainland mobile \
                 number, like 138 0013 8000 (+86 optional).",
            )
        }
        ContactField::Address => {
            // An address typed over several lines is kept as one.
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.is_empty() {
                return Err("请填写收货地址 Please enter the delivery address.");
            }
            one_line(&text)?;
            let chars = text.chars().count();
            if chars < 5 {
                return Err(
                    "请填写完整的收货地址（省、市、区、街道、门牌）Please enter the full address.",
                );
            }
            if chars > MAX_ADDRESS {
                return Err(
                    "地址太长（最多 200 个字）The address is too long (200 characters at most).",
                );
            }
            Ok(Some(text))
        }
        ContactField::Email => {
            if text.is_empty() {
                return Err("请填写电子邮箱 Please enter your email address.");
            }
            if is_email(text) {
                Ok(Some(text.to_owned()))
            } else {
                Err("电子邮箱格式不对，如 name@example.com This is not an email address, like name@example.com.")
            }
        }
        ContactField::Note => {
            if text.is_empty() {
                return Ok(None);
            }
            let text = text.replace("\r\n", "\n");
            if text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err("备注只能是文字 The note may only be text.");
            }
            if text.chars().count() > MAX_NOTE {
                return Err(
                    "备注太长（最多 500 个字）The note is too long (500 characters at most).",
                );
            }
            Ok(Some(text))
        }
    }
}

/// A mainland mobile number as shoppers type it — `13800138000`, `138 0013 8000`,
/// `138-0013-8000`, `+86 138 0013 8000`, `0086…`, `86…` — as its 11 digits (`1`, then `3`–`9`).
pub fn mobile_number(typed: &str) -> Option<String> {
    let compact: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '\u{3000}'))
        .collect();
    let digits = compact
        .strip_prefix("+86")
        .or_else(|| compact.strip_prefix("0086"))
        .or_else(|| compact.strip_prefix("86").filter(|rest| rest.len() == 11))
        .unwrap_or(&compact);
    let bytes = digits.as_bytes();
    let valid = bytes.len() == 11
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1]);
    valid.then(|| digits.to_owned())
}

/// An address of the form `local@domain.tld`: what a shop can check without sending mail.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= MAX_EMAIL
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_numbers_as_shoppers_type_them() {
        for typed in [
            "13800138000",
            "138 0013 8000",
            "138-0013-8000",
            "+86 138 0013 8000",
            "+86-13800138000",
            "008613800138000",
            "8613800138000",
            " 138\u{3000}0013\u{3000}8000 ",
        ] {
            assert_eq!(
                mobile_number(typed).as_deref(),
                Some("13800138000"),
                "{typed:?}"
            );
        }
        for typed in [
            "",
            "1380013800",
            "138001380001",
            "23800138000",
            "12800138000",
            "+1 415 555 0100",
            "010-12345678",
            "1380013800a",
            "+8613800138000x",
        ] {
            assert_eq!(mobile_number(typed), None, "{typed:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_and_fields_not_asked_are_ignored() {
        use ContactField::*;
        let fields = [Name, Phone, Address];
        let form = ContactForm {
            name: Some("  ".into()),
            phone: Some("12345".into()),
            address: Some("杭州市西湖区\r\n龙井路 1 号".into()),
            email: Some("not checked".into()),
            note: None,
        };
        let problems = check(&fields, &form).unwrap_err();
        assert_eq!(
            problems.iter().map(|p| p.field).collect::<Vec<_>>(),
            vec![Name, Phone]
        );
        let form = ContactForm {
            name: Some(" 王小明 ".into()),
            phone: Some("+86 139 1234 5678".into()),
            ..form
        };
        let contact = check(&fields, &form).unwrap();
        assert_eq!(contact.name.as_deref(), Some("王小明"));
        assert_eq!(contact.phone.as_deref(), Some("13912345678"));
        assert_eq!(contact.address.as_deref(), Some("杭州市西湖区 龙井路 1 号"));
        assert_eq!(contact.email, None);
        assert!(check(&[], &ContactForm::default()).unwrap().is_empty());
    }

    #[test]
    fn emails_and_notes() {
        for good in ["a@b.cn", "wang.xiaoming+tea@example.com.cn"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.cn",
            "a@@b.cn",
            "a@b..cn",
            "a b@c.cn",
            "a@b.cn,c@d.cn",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        let note = check_field(ContactField::Note, "  ").unwrap();
        assert_eq!(note, None, "an empty note is no note");
        let note = check_field(ContactField::Note, "请下午送\r\n谢谢").unwrap();
        assert_eq!(note.as_deref(), Some("请下午送\n谢谢"));
        assert!(check_field(ContactField::Note, &"字".repeat(501)).is_err());
        assert!(check_field(ContactField::Name, "a\u{0}b").is_err());
    }
}
