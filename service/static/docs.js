// Swagger UI for the service's own OpenAPI document, every file served by the service itself.
// The schema is fetched first: when the service keeps it behind the bearer token
// (DOCS_ACCESS=token) the page asks for the token, and either way a token given here is
// pre-filled in Swagger's "Authorize" dialog so "Try it out" sends it.
"use strict";

const $ = (id) => document.getElementById(id);
const SCHEME = "bearerAuth"; // the OpenAPI security scheme the service declares with API_TOKEN

async function load(token) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch("openapi.json", { headers, cache: "no-store" });
  if (response.status === 401) {
    $("token-form").hidden = false;
    $("error").hidden = !token;
    $("error").textContent = token ? "The service refused this token." : "";
    $("token").focus();
    return;
  }
  if (!response.ok) {
    $("error").hidden = false;
    $("error").textContent = `GET /openapi.json: HTTP ${response.status}`;
    return;
  }
  $("token-form").hidden = true;
  $("error").hidden = true;
  const ui = SwaggerUIBundle({
    spec: await response.json(),
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null, // never send the schema to an online validator
    showExtensions: true,
    showCommonExtensions: true,
  });
  if (token) ui.preauthorizeApiKey(SCHEME, token);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load($("token").value.trim());
});

load(null).catch((err) => {
  $("error").hidden = false;
  $("error").textContent = String(err);
});
