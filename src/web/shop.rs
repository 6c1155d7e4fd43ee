//! The catalogue and the direct buy.

use super::cart::{checkout_form_url, BuyForm};
use super::{AppState, Chrome, WebError};
use crate::checkout::{CheckoutError, Contact, Missing, NewItem, MAX_NUM};
use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

struct ProductView {
    id: i64,
    name: String,
    description: String,
    price: String,
    stock: i64,
    max_num: i64,
}

#[derive(Template)]
#[template(path = "shop.html")]
struct ShopPage {
    products: Vec<ProductView>,
    chrome: Chrome,
}

pub async fn catalogue(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    let products = state
        .checkout
        .catalogue()
        .await?
        .into_iter()
        .map(|p| ProductView {
            id: p.id,
            name: p.name,
            description: p.description,
            price: p.price.to_string(),
            stock: p.stock,
            max_num: p.stock.clamp(1, MAX_NUM),
        })
        .collect();
    render(&ShopPage {
        products,
        chrome: state.chrome(&req),
    })
}

/// A rendered page, 200.
pub fn render(page: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// A product and quantity as a form gave them: a product that is not a number is not found;
/// a quantity that is not one is a quantity the checkout refuses.
pub fn item_of(sku_id: Option<&str>, num: Option<&str>) -> Result<NewItem, CheckoutError> {
    let number = |field: Option<&str>| field.and_then(|s| s.trim().parse::<i64>().ok());
    let product_id = number(sku_id).ok_or(CheckoutError::NotFound(Missing::Product))?;
    let num = number(num).unwrap_or(0);
    Ok(NewItem { product_id, num })
}

/// The direct buy: one product, straight to its pay page. A bare buy form, when the shop asks
/// for a contact, goes to the contact form first; a contact with problems gets that form back
/// with them.
pub async fn place_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<BuyForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let form = form.into_inner();
    let item = item_of(form.sku_id.as_deref(), form.num.as_deref())?;
    let fields = &state.checkout.terms().checkout_fields;
    let contact = if fields.is_empty() {
        Contact::default()
    } else if form.contact().is_absent(fields) {
        return Ok(see_other(checkout_form_url(&item)));
    } else {
        match state.checkout.check_contact(&form.contact()) {
            Ok(contact) => contact,
            Err(problems) => {
                return super::cart::form_again(&state, &req, Some(item), &form, problems).await
            }
        }
    };
    place(&state, &req, vec![item], contact, false).await
}

/// Places the order and sends the shopper to its pay page, with the cookie that shows this
/// browser the receipt link once paid; `from_cart` empties the cart.
pub async fn place(
    state: &AppState,
    req: &HttpRequest,
    items: Vec<NewItem>,
    contact: Contact,
    from_cart: bool,
) -> Result<HttpResponse, WebError> {
    let order = state
        .checkout
        .place_order(items, contact, &state.shopper(req))
        .await?;
    let mut response = see_other(format!("/pay/{}", order.out_trade_no));
    if let Some(cookie) = state.receipt_cookie(&order) {
        response.add_cookie(&cookie).map_err(|_| WebError::Cookie)?;
    }
    if from_cart {
        response
            .add_cookie(&state.cart_cookie(&Default::default()))
            .map_err(|_| WebError::Cookie)?;
    }
    Ok(response)
}

/// A 303 to `to`.
pub fn see_other(to: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .finish()
}
