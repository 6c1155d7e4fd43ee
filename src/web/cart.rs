//! The cart (kept in a cookie) and the checkout form: the buyer's contact, then the order.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::shop::{item_of, place, render, see_other, short_of_stock, shortage};
use super::{cart_of, no_store, AppState, Chrome, WebError};
use crate::checkout::{
    CartError, CheckoutError, ContactForm, Missing, NewItem, PricedLine, Problem, MAX_NUM,
};
use crate::domain::{ContactField, Fen};

/// The buy and checkout forms: a product (the direct buy; absent for the cart's checkout) and
/// the buyer's contact. Every field arrives as text; no amount is ever read from the browser.
#[derive(Debug, Default, Deserialize)]
pub struct BuyForm {
    pub sku_id: Option<String>,
    pub num: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    email: Option<String>,
    note: Option<String>,
}

impl BuyForm {
    /// The contact as typed.
    pub fn contact(&self) -> ContactForm {
        ContactForm {
            name: self.name.clone(),
            phone: self.phone.clone(),
            address: self.address.clone(),
            email: self.email.clone(),
            note: self.note.clone(),
        }
    }
}

/// A cart change: a product and a quantity.
#[derive(Debug, Deserialize)]
pub struct LineForm {
    sku_id: Option<String>,
    num: Option<String>,
}

/// The contact form for buying one product directly.
pub fn checkout_form_url(item: &NewItem) -> String {
    format!("/checkout?sku_id={}&num={}", item.product_id, item.num)
}

fn cart_error(e: CartError) -> WebError {
    match e {
        CartError::Quantity => CheckoutError::BadQuantity.into(),
        CartError::Full => WebError::CartFull,
    }
}

/// Adds a product to the cart.
pub async fn add(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LineForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let item = item_of(form.sku_id.as_deref(), form.num.as_deref())?;
    if !(1..=MAX_NUM).contains(&item.num) {
        return Err(CheckoutError::BadQuantity.into());
    }
    state.checkout.product(item.product_id).await?;
    let mut cart = cart_of(&req);
    cart.add(item.product_id, item.num).map_err(cart_error)?;
    back_to_cart(&state, &cart)
}

/// Changes a line's quantity; 0 removes it.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LineForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let item = item_of(form.sku_id.as_deref(), form.num.as_deref())?;
    let mut cart = cart_of(&req);
    if item.num > 0 && cart.num(item.product_id) == 0 {
        // Not a line of this cart: only a product on sale may become one.
        state.checkout.product(item.product_id).await?;
    }
    cart.set(item.product_id, item.num).map_err(cart_error)?;
    back_to_cart(&state, &cart)
}

fn back_to_cart(state: &AppState, cart: &crate::checkout::Cart) -> Result<HttpResponse, WebError> {
    let mut response = see_other("/cart".into());
    response
        .add_cookie(&state.cart_cookie(cart))
        .map_err(|_| WebError::Cookie)?;
    Ok(response)
}

/// A line as the cart and checkout pages show it.
struct LineView {
    sku_id: i64,
    name: String,
    unit_price: String,
    num: i64,
    line_total: String,
    /// What is left, when the line asks for more (Chinese, English).
    shortage: Option<(String, String)>,
}

impl LineView {
    fn of(line: &PricedLine) -> LineView {
        LineView {
            sku_id: line.product.id,
            name: line.product.name.clone(),
            unit_price: line.product.price.to_string(),
            num: line.num,
            line_total: line.line_total.to_string(),
            shortage: line.short().then(|| shortage(line.product.stock)),
        }
    }
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    lines: Vec<LineView>,
    total: String,
    /// Lines dropped because their product is no longer sold.
    dropped: usize,
    any_short: bool,
    /// A checkout of this cart was just refused (short of stock, or a product no longer sold).
    refused: bool,
    max_num: i64,
    chrome: Chrome,
}

/// The cart: quantities, line totals, the total; lines whose product is no longer sold are
/// dropped (and the cookie updated).
pub async fn cart_page(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    draw_cart(&state, &req, false).await
}

/// The cart (`refused`: again after its checkout was refused, 409, saying so).
async fn draw_cart(
    state: &AppState,
    req: &HttpRequest,
    refused: bool,
) -> Result<HttpResponse, WebError> {
    let cart = cart_of(req);
    let priced = state.checkout.price_cart(&cart).await?;
    let lines: Vec<LineView> = priced.lines.iter().map(LineView::of).collect();
    let mut chrome = state.chrome(req);
    chrome.cart_items = priced.lines.iter().map(|l| l.num).sum();
    let page = CartPage {
        any_short: lines.iter().any(|l| l.shortage.is_some()),
        refused,
        lines,
        total: priced.total.to_string(),
        dropped: priced.dropped,
        max_num: MAX_NUM,
        chrome,
    };
    let mut response = no_store(render(&page)?);
    if refused {
        *response.status_mut() = actix_web::http::StatusCode::CONFLICT;
    }
    if priced.cart != cart {
        response
            .add_cookie(&state.cart_cookie(&priced.cart))
            .map_err(|_| WebError::Cookie)?;
    }
    Ok(response)
}

/// A contact field as the form shows it.
struct FieldView {
    name: &'static str,
    /// Chinese, English.
    label: (&'static str, &'static str),
    /// `text`, `tel`, `email` or `textarea`.
    input: &'static str,
    autocomplete: &'static str,
    maxlength: usize,
    required: bool,
    value: String,
    problem: Option<&'static str>,
}

impl FieldView {
    fn of(field: ContactField, value: Option<&str>, problem: Option<&'static str>) -> FieldView {
        use crate::checkout::contact::{MAX_ADDRESS, MAX_EMAIL, MAX_NAME, MAX_NOTE};
        let (label, input, autocomplete, maxlength) = match field {
            ContactField::Name => (("收货人", "Name"), "text", "name", MAX_NAME),
            // Room for spaces and +86 around the 11 digits.
            ContactField::Phone => (("手机号码", "Mobile number"), "tel", "tel", 20),
            ContactField::Address => (
                ("收货地址", "Delivery address"),
                "textarea",
                "street-address",
                MAX_ADDRESS,
            ),
            ContactField::Email => (("电子邮箱", "Email"), "email", "email", MAX_EMAIL),
            ContactField::Note => (("备注", "Note (optional)"), "textarea", "off", MAX_NOTE),
        };
        FieldView {
            name: field.as_str(),
            label,
            input,
            autocomplete,
            maxlength,
            required: field != ContactField::Note,
            value: value.unwrap_or_default().to_owned(),
            problem,
        }
    }
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    lines: Vec<LineView>,
    total: String,
    fields: Vec<FieldView>,
    /// The direct buy's product and quantity (absent: the cart's checkout).
    buy_now: Option<NewItem>,
    problems: usize,
    /// The privacy notice, when the form asks for contact details.
    privacy_notice: Option<String>,
    chrome: Chrome,
}

/// What is being bought: the direct buy's one product, or the cart's lines. `None`: an empty
/// cart.
async fn summary(
    state: &AppState,
    req: &HttpRequest,
    buy_now: Option<NewItem>,
) -> Result<Option<(Vec<LineView>, Fen)>, WebError> {
    let priced = match buy_now {
        Some(item) => {
            if !(1..=MAX_NUM).contains(&item.num) {
                return Err(CheckoutError::BadQuantity.into());
            }
            let product = state.checkout.product(item.product_id).await?;
            let mut cart = crate::checkout::Cart::default();
            cart.add(item.product_id, item.num).map_err(cart_error)?;
            crate::checkout::cart::price(&cart, &[product])
        }
        None => state.checkout.price_cart(&cart_of(req)).await?,
    };
    if priced.lines.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        priced.lines.iter().map(LineView::of).collect(),
        priced.total,
    )))
}

/// Draws the checkout form: blank, or as the shopper filled it in with each field's problem.
async fn checkout_form(
    state: &AppState,
    req: &HttpRequest,
    buy_now: Option<NewItem>,
    typed: &ContactForm,
    problems: &[Problem],
) -> Result<HttpResponse, WebError> {
    let Some((lines, total)) = summary(state, req, buy_now).await? else {
        return Ok(see_other("/cart".into()));
    };
    let fields = state
        .checkout
        .terms()
        .checkout_fields
        .iter()
        .map(|&field| {
            let problem = problems
                .iter()
                .find(|p| p.field == field)
                .map(|p| p.message);
            FieldView::of(field, typed.get(field), problem)
        })
        .collect();
    let page = CheckoutPage {
        lines,
        total: total.to_string(),
        fields,
        buy_now,
        problems: problems.len(),
        privacy_notice: (!state.checkout.terms().checkout_fields.is_empty())
            .then(|| state.checkout.privacy_notice()),
        chrome: state.chrome(req),
    };
    let mut response = no_store(render(&page)?);
    if !problems.is_empty() {
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// The contact form shown again with its problems (400), keeping what the shopper typed.
pub async fn form_again(
    state: &AppState,
    req: &HttpRequest,
    buy_now: Option<NewItem>,
    form: &BuyForm,
    problems: Vec<Problem>,
) -> Result<HttpResponse, WebError> {
    checkout_form(state, req, buy_now, &form.contact(), &problems).await
}

/// The checkout form, for the cart or (with `sku_id` and `num`) for one product.
pub async fn checkout_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LineForm>,
) -> Result<HttpResponse, WebError> {
    let buy_now = match &query.sku_id {
        Some(sku_id) => Some(item_of(Some(sku_id), query.num.as_deref())?),
        None => None,
    };
    checkout_form(&state, &req, buy_now, &ContactForm::default(), &[]).await
}

/// Takes the contact and places the order — of the cart, or of the one product the form
/// names — reserving all its stock or none.
pub async fn checkout(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<BuyForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let form = form.into_inner();
    let buy_now = match &form.sku_id {
        Some(sku_id) => Some(item_of(Some(sku_id), form.num.as_deref())?),
        None => None,
    };
    let contact = match state.checkout.check_contact(&form.contact()) {
        Ok(contact) => contact,
        Err(problems) => return form_again(&state, &req, buy_now, &form, problems).await,
    };
    let items = match buy_now {
        Some(item) => vec![item],
        None => {
            let priced = state.checkout.price_cart(&cart_of(&req)).await?;
            if priced.cart.is_empty() {
                return Ok(see_other("/cart".into()));
            }
            priced.cart.lines().to_vec()
        }
    };
    // Refused for want of stock: back to where the quantity was chosen, kept, with what is left.
    match (place(&state, &req, items, contact, buy_now.is_none()).await, buy_now) {
        (Err(WebError::Checkout(CheckoutError::OutOfStock)), Some(item)) => {
            short_of_stock(&state, &req, item).await
        }
        (Err(WebError::Checkout(CheckoutError::OutOfStock)), None)
        // A product that stopped being sold since the cart was priced.
        | (Err(WebError::Checkout(CheckoutError::NotFound(Missing::Product))), None) => {
            draw_cart(&state, &req, true).await
        }
        (placed, _) => placed,
    }
}
